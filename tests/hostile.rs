//! Hostile clients against the real binary (issue 14): every case sends what an
//! anonymous attacker (or a broken encoder) would, then checks the documented
//! answer, that the process is alive with a fast `/livez`, and that RSS and open
//! fds stay bounded. Each group starts ONE server with small limits and runs its
//! cases in sequence; at the end a legitimate publish and play still work.
//!
//! A failing case does not stop the group: every outcome is printed by name and
//! the test fails listing all the cases that did not hold.

mod common;

use std::future::Future;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::hostile::{
    amf_encode, deep_connect_command, get_request, hs256, raw_http, server_signing_key, small_flv, type0_header,
    unix_now, Amf, Ending, FlvTag, Rtmp, Watch, C1_LEN,
};
use common::playlist::{first_variant_uri, MediaPlaylist};
use common::{get_text, wait_until_live, Server, Source, StreamInfo};
use serde_json::json;

/// Each case connects from its own loopback address, so per-IP caps meet
/// only that case's sockets (and never the legitimate publisher on 127.0.0.1).
fn client_ip(case: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 1, case)
}

const PUBLISH_TIMEOUT_SECS: u64 = 2;
const RTMP_PER_IP: usize = 8;

/// Runs the cases of one group and collects their outcomes.
struct Cases<'a> {
    watch: &'a Watch,
    failed: Vec<String>,
    passed: usize,
}

impl<'a> Cases<'a> {
    fn new(watch: &'a Watch) -> Self {
        Self {
            watch,
            failed: Vec::new(),
            passed: 0,
        }
    }

    /// Runs `case`, then the health checks; a failure is recorded, not raised.
    async fn run<F: Future<Output = Result<(), String>>>(&mut self, name: &str, case: F) {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(Duration::from_secs(40), case).await {
            Err(_) => Err("case did not finish within 40 s".to_string()),
            Ok(result) => result,
        };
        let health = self.watch.check(name).await;
        match outcome.and(health) {
            Ok(()) => {
                self.passed += 1;
                eprintln!("PASS {name} ({} ms)", started.elapsed().as_millis());
            }
            Err(why) => {
                eprintln!("FAIL {name}: {why}");
                self.failed.push(format!("{name}: {why}"));
            }
        }
    }

    fn finish(self, group: &str) {
        eprintln!("{group}: {} passed, {} failed", self.passed, self.failed.len());
        // To read the whole server log of a failed run: HOSTILE_LOG_DIR=/some/dir.
        if let Some(dir) = std::env::var_os("HOSTILE_LOG_DIR") {
            let to = std::path::Path::new(&dir).join(format!("{}.log", group.replace(' ', "-")));
            let _ = std::fs::copy(&self.watch.log_path, to);
        }
        assert!(
            self.failed.is_empty(),
            "{group}: {} case(s) failed:\n{}",
            self.failed.len(),
            self.failed.join("\n")
        );
    }
}

fn closed_within(ending: Ending, limit: Duration, what: &str) -> Result<(), String> {
    match ending {
        Ending::Closed(after) if after <= limit => Ok(()),
        Ending::Closed(after) => Err(format!("{what}: closed only after {after:?} (limit {limit:?})")),
        Ending::Open => Err(format!("{what}: still open after {limit:?}")),
    }
}

/// A write the server may refuse by closing: an error means "closed".
async fn send_or_closed(client: &mut Rtmp, bytes: &[u8]) -> bool {
    client.send_raw(bytes).await.is_ok()
}

/// Deadline for anything the publish timeout must end, with slack for a
/// loaded machine.
fn publish_deadline() -> Duration {
    Duration::from_secs(PUBLISH_TIMEOUT_SECS + 3)
}

// ---- RTMP: handshake and chunk layer ----------------------------------------------------

async fn handshake_garbage(server: &Server, ip: Ipv4Addr, bytes: Vec<u8>) -> Result<(), String> {
    let mut client = Rtmp::open(ip, server.rtmp).await.map_err(|e| e.to_string())?;
    let _ = send_or_closed(&mut client, &bytes).await;
    closed_within(
        client.ending(Duration::from_secs(6)).await,
        Duration::from_secs(6),
        "garbage handshake",
    )
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn c0c1(version: u8) -> Vec<u8> {
    let mut bytes = vec![version];
    bytes.extend(vec![0u8; C1_LEN]);
    bytes
}

/// `count` messages of zero length, each on its own chunk stream id: cheap
/// to send, and each id is state the server keeps.
async fn chunk_stream_flood(server: &Server, ip: Ipv4Addr, count: u32, partial: bool) -> Result<(), String> {
    let mut client = Rtmp::connected(ip, server.rtmp).await?;
    let mut bytes = Vec::new();
    for csid in 64..64 + count {
        if partial {
            // 200 bytes announced, one 128-byte chunk sent: a partial message per id.
            bytes.extend(type0_header(csid, 9, 200, 0));
            bytes.extend([0u8; 128]);
        } else {
            bytes.extend(type0_header(csid, 4, 0, 0));
        }
    }
    let started = Instant::now();
    let _ = send_or_closed(&mut client, &bytes).await;
    closed_within(
        client.ending(Duration::from_secs(4)).await,
        Duration::from_secs(4),
        "flood",
    )?;
    let elapsed = started.elapsed();
    if elapsed > Duration::from_secs(3) {
        return Err(format!("the server took {elapsed:?} to refuse the flood"));
    }
    Ok(())
}

/// Under the cap, many chunk streams are fine: `connect` is still answered.
async fn chunk_streams_under_the_cap(server: &Server, ip: Ipv4Addr) -> Result<(), String> {
    let mut client = Rtmp::connected(ip, server.rtmp).await?;
    let mut bytes = Vec::new();
    for csid in 64..64 + 40 {
        bytes.extend(type0_header(csid, 4, 0, 0));
    }
    client.send_raw(&bytes).await.map_err(|e| e.to_string())?;
    client.connect_app("live").await
}

/// A message header announcing `length` bytes, then 64 KiB of it.
async fn big_message_before_publish(server: &Server, ip: Ipv4Addr, length: u32) -> Result<(), String> {
    let mut client = Rtmp::connected(ip, server.rtmp).await?;
    client.set_chunk_size(65536).await.map_err(|e| e.to_string())?;
    let mut bytes = type0_header(5, 9, length, 0);
    bytes.extend(vec![0u8; 65536]);
    let _ = send_or_closed(&mut client, &bytes).await;
    closed_within(
        client.ending(Duration::from_secs(3)).await,
        Duration::from_secs(3),
        &format!("{length}-byte message before publish"),
    )
}

async fn chunk_size_then_connect(server: &Server, ip: Ipv4Addr, size: u32) -> Result<(), String> {
    let mut client = Rtmp::connected(ip, server.rtmp).await?;
    client.set_chunk_size(size).await.map_err(|e| e.to_string())?;
    client.connect_app("live").await
}

async fn chunk_size_refused(server: &Server, ip: Ipv4Addr, size: u32) -> Result<(), String> {
    let mut client = Rtmp::connected(ip, server.rtmp).await?;
    let _ = client.set_chunk_size(size).await;
    closed_within(
        client.ending(Duration::from_secs(3)).await,
        Duration::from_secs(3),
        "invalid chunk size",
    )
}

/// 0xffffffff: the top bit is reserved; whatever the server makes of the
/// rest, it answers or closes, never hangs or dies.
async fn chunk_size_top_bit(server: &Server, ip: Ipv4Addr) -> Result<(), String> {
    let mut client = Rtmp::connected(ip, server.rtmp).await?;
    let _ = client.set_chunk_size(0xffff_ffff).await;
    let body = common::hostile::connect_command("live", server.rtmp);
    let _ = client.command(0, &body).await;
    if client
        .wait_for("NetConnection.Connect.Success", Duration::from_secs(3))
        .await
    {
        return Ok(());
    }
    closed_within(
        client.ending(Duration::from_secs(3)).await,
        Duration::from_secs(3),
        "0xffffffff",
    )
}

async fn deep_amf(server: &Server, ip: Ipv4Addr, arrays: bool) -> Result<(), String> {
    let mut client = Rtmp::connected(ip, server.rtmp).await?;
    client.set_chunk_size(65536).await.map_err(|e| e.to_string())?;
    let levels = if arrays { 7_900 } else { 15_900 };
    let body = deep_connect_command(levels, arrays);
    assert!(body.len() < 64 * 1024, "stays under the pre-publish message limit");
    let _ = client.command(0, &body).await;
    if client.got("NetConnection.Connect.Success") {
        return Err("a connect nested {levels} deep was accepted".into());
    }
    closed_within(
        client.ending(Duration::from_secs(3)).await,
        Duration::from_secs(3),
        "deep AMF",
    )
}

/// A huge `app` reaches the log clipped: the whole connection writes < 4 KiB.
async fn long_app_name(server: &Server, watch: &Watch, ip: Ipv4Addr, len: usize) -> Result<(), String> {
    let before = watch.log_len();
    let mut client = Rtmp::connected(ip, server.rtmp).await?;
    client.set_chunk_size(65536).await.map_err(|e| e.to_string())?;
    let app = "A".repeat(len);
    let body = amf_encode(&[
        Amf::Str("connect".into()),
        Amf::Num(1.0),
        Amf::Obj(vec![("app".into(), Amf::Str(app))]),
    ]);
    let bytes = client.chunks(3, 20, 0, 0, &body);
    let _ = send_or_closed(&mut client, &bytes).await;
    // Accepted (then ended by the publish timeout) or refused: either way, closed.
    closed_within(
        client.ending(publish_deadline()).await,
        publish_deadline(),
        "long app name",
    )?;
    // The server logs the connection's end right after it closes the socket.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !watch.log_since(before).contains("connection") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let written = watch.log_len().saturating_sub(before);
    if written > 4096 {
        return Err(format!("a {len}-byte app name wrote {written} bytes of log"));
    }
    if watch.log_since(before).contains(&"A".repeat(200)) {
        return Err("the app name reached the log unclipped".into());
    }
    Ok(())
}

/// Over the per-IP cap, sockets are closed before any handshake byte.
async fn rtmp_per_ip_cap(server: &Server, ip: Ipv4Addr) -> Result<(), String> {
    let mut clients = Vec::new();
    for _ in 0..RTMP_PER_IP + 12 {
        let mut client = Rtmp::open(ip, server.rtmp).await.map_err(|e| e.to_string())?;
        let _ = send_or_closed(&mut client, &c0c1(3)).await;
        clients.push(client);
    }
    let (mut answered, mut closed) = (0, 0);
    for client in &mut clients {
        let mut first = [0u8; 1];
        match tokio::time::timeout(
            Duration::from_secs(2),
            tokio::io::AsyncReadExt::read(&mut client.socket, &mut first),
        )
        .await
        {
            Ok(Ok(1)) => answered += 1,
            Ok(_) => closed += 1,
            Err(_) => {}
        }
    }
    if answered > RTMP_PER_IP || closed < 12 {
        return Err(format!(
            "{} connections from one IP: {answered} answered, {closed} closed (cap {RTMP_PER_IP})",
            clients.len()
        ));
    }
    Ok(())
}

/// A 300-byte message at an extended timestamp, in 128-byte chunks; with
/// `omit`, its type-3 continuations lack the 4 repeated timestamp bytes (as
/// some encoders send). The parser must stay in step: a command after it is
/// answered.
async fn type3_extended_timestamp(server: &Server, ip: Ipv4Addr, omit: bool) -> Result<(), String> {
    let mut client = Rtmp::connected(ip, server.rtmp).await?;
    client.connect_app("live").await?;
    client.received.clear();
    client.omit_ext_on_type3 = omit;
    let payload = vec![0xAAu8; 300];
    client
        .send(6, 9, 1, 0x0100_0000, &payload)
        .await
        .map_err(|e| e.to_string())?;
    let release = amf_encode(&[
        Amf::Str("releaseStream".into()),
        Amf::Num(7.0),
        Amf::Null,
        Amf::Str("k".into()),
    ]);
    client.command(0, &release).await.map_err(|e| e.to_string())?;
    if client.wait_for("_result", Duration::from_secs(3)).await {
        Ok(())
    } else {
        Err("the command after the message was not answered (parser out of step or closed)".into())
    }
}

// ---- RTMP: slow and idle clients, run side by side ------------------------------------------

async fn idle_after_tcp(server: &Server, ip: Ipv4Addr) -> Result<(), String> {
    let mut client = Rtmp::open(ip, server.rtmp).await.map_err(|e| e.to_string())?;
    let limit = Duration::from_secs(7);
    closed_within(client.ending(limit).await, limit, "silent TCP connection")
}

async fn short_c1(server: &Server, ip: Ipv4Addr) -> Result<(), String> {
    let mut client = Rtmp::open(ip, server.rtmp).await.map_err(|e| e.to_string())?;
    let _ = send_or_closed(&mut client, &c0c1(3)[..701]).await;
    let limit = Duration::from_secs(7);
    closed_within(client.ending(limit).await, limit, "C0 and half a C1")
}

/// One byte per second of a `connect`: the publish deadline ends it.
async fn trickle_before_publish(server: &Server, ip: Ipv4Addr) -> Result<(), String> {
    let mut client = Rtmp::connected(ip, server.rtmp).await?;
    let body = common::hostile::connect_command("live", server.rtmp);
    let bytes = client.chunks(3, 20, 0, 0, &body);
    let started = Instant::now();
    for byte in bytes {
        if client.send_raw(&[byte]).await.is_err() {
            break;
        }
        if let Ending::Closed(_) = client.ending(Duration::from_secs(1)).await {
            break;
        }
        if started.elapsed() > Duration::from_secs(15) {
            break;
        }
    }
    closed_within(
        Ending::Closed(started.elapsed()),
        publish_deadline() + Duration::from_secs(1),
        "trickling connect",
    )
}

async fn connect_never_publish(server: &Server, ip: Ipv4Addr) -> Result<(), String> {
    let mut client = Rtmp::connected(ip, server.rtmp).await?;
    client.connect_app("live").await?;
    closed_within(
        client.ending(publish_deadline()).await,
        publish_deadline(),
        "connect without publish",
    )
}

/// Eight partial messages just under the pre-publish limit, then silence.
async fn partial_messages_parked(server: &Server, ip: Ipv4Addr) -> Result<(), String> {
    let mut client = Rtmp::connected(ip, server.rtmp).await?;
    client.set_chunk_size(65536).await.map_err(|e| e.to_string())?;
    for csid in 10..18 {
        let mut bytes = type0_header(csid, 9, 64 * 1024 - 1, 0);
        bytes.extend(vec![0u8; 60 * 1024]);
        if !send_or_closed(&mut client, &bytes).await {
            break;
        }
    }
    closed_within(
        client.ending(publish_deadline()).await,
        publish_deadline(),
        "parked partials",
    )
}

async fn slow_rtmp_cases(server: &Server, cases: &mut Cases<'_>) {
    let started = Instant::now();
    let (idle, short, trickle, never, parked) = tokio::join!(
        idle_after_tcp(server, client_ip(40)),
        short_c1(server, client_ip(41)),
        trickle_before_publish(server, client_ip(42)),
        connect_never_publish(server, client_ip(43)),
        partial_messages_parked(server, client_ip(44)),
    );
    eprintln!("slow RTMP cases ran side by side in {:?}", started.elapsed());
    for (name, outcome) in [
        ("rtmp_silent_tcp_connection_is_closed", idle),
        ("rtmp_half_c1_then_silence_is_closed", short),
        ("rtmp_connect_trickled_one_byte_per_second_is_closed", trickle),
        ("rtmp_connect_without_publish_hits_the_publish_deadline", never),
        ("rtmp_parked_partial_messages_hit_the_publish_deadline", parked),
    ] {
        cases.run(name, async { outcome }).await;
    }
}

// ---- RTMP: after a valid publish ----------------------------------------------------------

struct Media {
    video_config: FlvTag,
    audio_config: FlvTag,
    frames: Vec<FlvTag>,
}

fn media(dir: &std::path::Path) -> Media {
    let tags = small_flv(dir, 2);
    let find = |kind| {
        tags.iter()
            .find(|t| t.kind == kind && t.is_config())
            .cloned()
            .expect("config")
    };
    Media {
        video_config: find(9),
        audio_config: find(8),
        frames: tags
            .iter()
            .filter(|t| t.kind != 18 && !t.is_config())
            .cloned()
            .collect(),
    }
}

fn count_lines(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

/// What a stream's events hold so far: (stream.failed count, publisher_left count).
async fn failures(server: &Server, admin: &str, stream: &StreamInfo) -> Result<(usize, usize), String> {
    // Not `Server::stream_events`, which panics when the server is gone: that is
    // this case's failure to report.
    let url = format!(
        "{}/api/v1/apps/app_default/events?stream_id={}&limit=100",
        server.base(),
        stream.id
    );
    let gone = |e: reqwest::Error| format!("the server is gone ({e})");
    let response = common::http().get(url).bearer_auth(admin).send().await.map_err(gone)?;
    let events: serde_json::Value = response.json().await.map_err(gone)?;
    let events = events.as_array().cloned().unwrap_or_default();
    let kind = |e: &serde_json::Value| e["type"].as_str().unwrap_or_default().to_string();
    let failed = events.iter().filter(|e| kind(e) == "stream.failed").count();
    let left = events
        .iter()
        .filter(|e| kind(e) == "stream.disconnected" && e["body"]["data"]["reason"] == "publisher_left")
        .count();
    Ok((failed, left))
}

/// The contract for a publish the server cannot follow: the connection
/// stays up, or the ladder fails, and then the publisher gets onStatus
/// NetStream.Publish.Failed and the stream a `stream.failed` event; the
/// publisher is never reported as having left while it is connected.
async fn judge_publish(
    server: &Server,
    admin: &str,
    stream: &StreamInfo,
    before: (usize, usize),
    mut client: Rtmp,
) -> Result<(), String> {
    let told = client
        .wait_for("NetStream.Publish.Failed", Duration::from_secs(2))
        .await;
    let ending = client
        .ending(Duration::from_millis(if told { 3000 } else { 200 }))
        .await;
    // Events reach the store a moment after the socket closes.
    let deadline = Instant::now() + Duration::from_secs(3);
    let (failed, left) = loop {
        let (failed, left) = failures(server, admin, stream).await?;
        let (failed, left) = (failed > before.0, left > before.1);
        let settled = failed || (!told && ending == Ending::Open);
        if settled || Instant::now() > deadline {
            break (failed, left);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if left {
        return Err("publisher_left reported while the publisher was connected".into());
    }
    if failed && !told {
        return Err("stream.failed, but the publisher got no onStatus NetStream.Publish.Failed".into());
    }
    if matches!(ending, Ending::Closed(_)) && !failed {
        return Err(format!(
            "closed without a stream.failed event (onStatus Publish.Failed: {told})"
        ));
    }
    Ok(())
}

/// Video frames whose timestamps advance by 0x7fffffff each: unwrapped, they
/// overflow any nanosecond clock after ~8,600 frames.
async fn timestamp_jumps(
    server: &Server,
    watch: &Watch,
    admin: &str,
    stream: &StreamInfo,
    media: &Media,
) -> Result<(), String> {
    let before = watch.log_len();
    let events_before = failures(server, admin, stream).await?;
    let mut client = Rtmp::publisher(client_ip(60), server.rtmp, &stream.stream_key).await?;
    client
        .send_tag(&media.video_config, 0)
        .await
        .map_err(|e| e.to_string())?;
    let video: Vec<&FlvTag> = media.frames.iter().filter(|t| t.kind == 9).take(5).collect();
    let started = Instant::now();
    for i in 0..9_000u32 {
        let tag = video[i as usize % video.len()];
        if client.send_tag(tag, i.wrapping_mul(0x7fff_ffff)).await.is_err()
            || started.elapsed() > Duration::from_secs(15)
        {
            break;
        }
    }
    let verdict = judge_publish(server, admin, stream, events_before, client).await;
    session_over(server, admin, stream, events_before).await?;
    let log = watch.log_since(before);
    if log.contains("panicked") {
        return Err("a thread panicked".into());
    }
    let warnings = count_lines(&log, "jumped") + count_lines(&log, "WARN");
    if warnings > 40 {
        return Err(format!("{warnings} warning lines for one publisher"));
    }
    verdict
}

/// Waits (up to 8 s) for the session's end to be recorded, so that whatever
/// the pipeline does when its input ends is in the log.
async fn session_over(server: &Server, admin: &str, stream: &StreamInfo, before: (usize, usize)) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        let (failed, left) = failures(server, admin, stream).await?;
        if failed > before.0 || left > before.1 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// A publisher that announces AAC and never sends audio, then leaves: the
/// stream ends as `publisher_left`, nothing panics.
async fn audio_config_without_audio(
    server: &Server,
    watch: &Watch,
    admin: &str,
    stream: &StreamInfo,
    media: &Media,
) -> Result<(), String> {
    let before = watch.log_len();
    let events_before = failures(server, admin, stream).await?;
    let mut client = Rtmp::publisher(client_ip(62), server.rtmp, &stream.stream_key).await?;
    client
        .send_tag(&media.video_config, 0)
        .await
        .map_err(|e| e.to_string())?;
    client
        .send_tag(&media.audio_config, 0)
        .await
        .map_err(|e| e.to_string())?;
    let first = media.frames.first().map_or(0, |t| t.timestamp);
    for tag in media.frames.iter().filter(|t| t.kind == 9) {
        client
            .send_tag(tag, tag.timestamp - first)
            .await
            .map_err(|e| e.to_string())?;
    }
    drop(client);
    session_over(server, admin, stream, events_before).await?;
    let (failed, left) = failures(server, admin, stream).await?;
    if watch.log_since(before).contains("panicked") {
        return Err("a thread panicked when the publisher left".into());
    }
    if failed > events_before.0 || left == events_before.1 {
        return Err("the stream did not end as publisher_left".into());
    }
    Ok(())
}

async fn timestamps_backwards(
    server: &Server,
    watch: &Watch,
    stream: &StreamInfo,
    media: &Media,
) -> Result<(), String> {
    let before = watch.log_len();
    let mut client = Rtmp::publisher(client_ip(61), server.rtmp, &stream.stream_key).await?;
    client
        .send_tag(&media.video_config, 0)
        .await
        .map_err(|e| e.to_string())?;
    let video: Vec<&FlvTag> = media.frames.iter().filter(|t| t.kind == 9).take(5).collect();
    for i in 0..2_000u32 {
        let ts = if i % 2 == 0 { 100_000 } else { 1_000 };
        if client.send_tag(video[i as usize % video.len()], ts).await.is_err() {
            break;
        }
    }
    let _ = client.ending(Duration::from_millis(500)).await;
    drop(client);
    let log = watch.log_since(before);
    let warnings = count_lines(&log, "backwards");
    if warnings > 20 {
        return Err(format!("{warnings} 'went backwards' lines for one publisher"));
    }
    Ok(())
}

/// A broken codec configuration, then real frames.
async fn codec_garbage(
    server: &Server,
    admin: &str,
    stream: &StreamInfo,
    media: &Media,
    ip: Ipv4Addr,
    config: FlvTag,
) -> Result<(), String> {
    let before = failures(server, admin, stream).await?;
    let mut client = Rtmp::publisher(ip, server.rtmp, &stream.stream_key).await?;
    if !send_ok(&mut client, &config, 0).await {
        return judge_publish(server, admin, stream, before, client).await;
    }
    let first = media.frames.first().map_or(0, |t| t.timestamp);
    for tag in media.frames.iter().take(60) {
        if !send_ok(&mut client, tag, tag.timestamp - first).await {
            break;
        }
    }
    judge_publish(server, admin, stream, before, client).await
}

async fn send_ok(client: &mut Rtmp, tag: &FlvTag, ts: u32) -> bool {
    client.send_tag(tag, ts).await.is_ok()
}

fn video_config(avcc: &[u8]) -> FlvTag {
    let mut data = vec![0x17, 0, 0, 0, 0];
    data.extend(avcc);
    FlvTag {
        kind: 9,
        timestamp: 0,
        data,
    }
}

fn audio_config(asc: &[u8]) -> FlvTag {
    let mut data = vec![0xAF, 0];
    data.extend(asc);
    FlvTag {
        kind: 8,
        timestamp: 0,
        data,
    }
}

/// avcC with one SPS of random bytes (a decoder cannot use it).
fn garbage_sps_avcc() -> Vec<u8> {
    let sps = pseudo_random(40, 7);
    let mut avcc = vec![1, 0x64, 0, 0x1f, 0xff, 0xe1];
    avcc.extend((sps.len() as u16).to_be_bytes());
    avcc.push(0x67);
    avcc.extend(&sps);
    avcc.extend([1, 0, 4, 0x68, 0xee, 0x3c, 0x80]);
    avcc
}

// ---- the legitimate client ------------------------------------------------------------------

async fn rtmp_handshake_cases(s: &Server, cases: &mut Cases<'_>) {
    cases
        .run("rtmp_c0_version_6_rtmpe", handshake_garbage(s, client_ip(1), c0c1(6)))
        .await;
    cases
        .run("rtmp_c0_version_255", handshake_garbage(s, client_ip(2), c0c1(255)))
        .await;
    cases
        .run(
            "rtmp_random_bytes_instead_of_handshake",
            handshake_garbage(s, client_ip(3), pseudo_random(4096, 1)),
        )
        .await;
    cases
        .run(
            "rtmp_http_request_on_the_rtmp_port",
            handshake_garbage(s, client_ip(4), get_request("/", &[])),
        )
        .await;
    cases
        .run("rtmp_garbage_chunks_after_handshake", async {
            let mut client = Rtmp::connected(client_ip(5), s.rtmp).await?;
            let _ = send_or_closed(&mut client, &[0xFF; 8192]).await;
            closed_within(
                client.ending(Duration::from_secs(3)).await,
                Duration::from_secs(3),
                "0xFF chunks",
            )
        })
        .await;
    cases
        .run("rtmp_type3_chunk_on_a_new_chunk_stream", async {
            let mut client = Rtmp::connected(client_ip(6), s.rtmp).await?;
            let _ = send_or_closed(&mut client, &[0xC0 | 9, 1, 2, 3]).await;
            closed_within(
                client.ending(Duration::from_secs(3)).await,
                Duration::from_secs(3),
                "type 3 first",
            )
        })
        .await;
}

async fn rtmp_chunk_cases(s: &Server, cases: &mut Cases<'_>) {
    cases
        .run(
            "rtmp_5000_chunk_stream_ids_are_capped",
            chunk_stream_flood(s, client_ip(7), 5000, false),
        )
        .await;
    cases
        .run(
            "rtmp_40_chunk_streams_are_fine",
            chunk_streams_under_the_cap(s, client_ip(22)),
        )
        .await;
    cases
        .run(
            "rtmp_partial_message_on_every_chunk_stream",
            chunk_stream_flood(s, client_ip(8), 100, true),
        )
        .await;
    cases
        .run(
            "rtmp_8mib_message_before_publish",
            big_message_before_publish(s, client_ip(9), 8 << 20),
        )
        .await;
    cases
        .run(
            "rtmp_64kib_plus_one_message_before_publish",
            big_message_before_publish(s, client_ip(10), 65537),
        )
        .await;
    cases
        .run("rtmp_set_chunk_size_0", chunk_size_refused(s, client_ip(11), 0))
        .await;
    cases
        .run("rtmp_set_chunk_size_1", chunk_size_then_connect(s, client_ip(12), 1))
        .await;
    cases
        .run(
            "rtmp_set_chunk_size_0x7fffffff",
            chunk_size_then_connect(s, client_ip(13), 0x7fff_ffff),
        )
        .await;
    cases
        .run("rtmp_set_chunk_size_0xffffffff", chunk_size_top_bit(s, client_ip(14)))
        .await;
}

async fn rtmp_command_cases(s: &Server, cases: &mut Cases<'_>) {
    let watch = cases.watch;
    cases
        .run("rtmp_amf0_objects_nested_15900_deep", deep_amf(s, client_ip(15), false))
        .await;
    cases
        .run("rtmp_amf0_arrays_nested_7900_deep", deep_amf(s, client_ip(16), true))
        .await;
    cases
        .run(
            "rtmp_60k_app_name_is_clipped_in_the_log",
            long_app_name(s, watch, client_ip(17), 60_000),
        )
        .await;
    cases
        .run(
            "rtmp_4mib_app_name_is_refused_and_clipped",
            long_app_name(s, watch, client_ip(18), 4 << 20),
        )
        .await;
    cases
        .run(
            "rtmp_connections_over_the_per_ip_cap",
            rtmp_per_ip_cap(s, client_ip(19)),
        )
        .await;
    cases
        .run(
            "rtmp_type3_without_extended_timestamp_is_accepted",
            type3_extended_timestamp(s, client_ip(20), true),
        )
        .await;
    cases
        .run(
            "rtmp_type3_with_extended_timestamp_is_accepted",
            type3_extended_timestamp(s, client_ip(21), false),
        )
        .await;
}

/// Valid publishers (a key made with the CLI) sending hostile media.
async fn rtmp_publisher_cases(s: &Server, cases: &mut Cases<'_>) {
    let watch = cases.watch;
    let admin = s.global_admin_token();
    let dir = tempfile::tempdir().expect("tmp");
    let media = media(dir.path());
    let jumps = s.create_stream("jumps", Some("passthrough"));
    cases
        .run(
            "rtmp_timestamps_jump_0x7fffffff_per_frame",
            timestamp_jumps(s, watch, &admin, &jumps, &media),
        )
        .await;
    let backwards = s.create_stream("backwards", Some("passthrough"));
    cases
        .run(
            "rtmp_timestamps_going_backwards_warn_rate_limited",
            timestamps_backwards(s, watch, &backwards, &media),
        )
        .await;
    let garbage = s.create_stream("garbage", Some("small"));
    let bad_configs = [
        ("rtmp_avcc_empty", video_config(&[])),
        (
            "rtmp_avcc_truncated_sps",
            video_config(&[1, 0x64, 0, 0x1f, 0xff, 0xe1, 0x00, 0x40, 0x67]),
        ),
        (
            "rtmp_avcc_31_sps_of_nothing",
            video_config(&[1, 0x64, 0, 0x1f, 0xff, 0xff]),
        ),
        ("rtmp_avcc_random_sps_fails_cleanly", video_config(&garbage_sps_avcc())),
        ("rtmp_aac_asc_empty", audio_config(&[])),
        ("rtmp_aac_asc_all_ones", audio_config(&[0xff, 0xff, 0xff, 0xff])),
        ("rtmp_aac_asc_escape_object_type_truncated", audio_config(&[0xf8])),
    ];
    for (i, (name, config)) in bad_configs.into_iter().enumerate() {
        let ip = client_ip(70 + i as u8);
        cases
            .run(name, codec_garbage(s, &admin, &garbage, &media, ip, config))
            .await;
    }

    // Last of the publishers: should it take the process down (a muxer panic when a stream
    // that announced audio but sent none ends), the cases before it have their outcome.
    let silent = s.create_stream("silent-audio", Some("passthrough"));
    cases
        .run(
            "rtmp_aac_config_without_audio_then_leave",
            audio_config_without_audio(s, watch, &admin, &silent, &media),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmp_hostile_inputs_are_refused_and_the_server_keeps_serving() {
    let server = Server::start_with(&[
        ("PULSE_RTMP_PUBLISH_TIMEOUT_SECS", "2"),
        ("PULSE_RTMP_MAX_CONNECTIONS_PER_IP", "8"),
    ]);
    let watch = Watch::new(&server).await;
    let mut cases = Cases::new(&watch);
    let s = &server;
    slow_rtmp_cases(s, &mut cases).await;
    rtmp_handshake_cases(s, &mut cases).await;
    rtmp_chunk_cases(s, &mut cases).await;
    rtmp_command_cases(s, &mut cases).await;
    rtmp_publisher_cases(s, &mut cases).await;

    let legit = server.create_stream("legit", Some("small"));
    let _publisher = Source::small().publish(&legit.publish_url());
    cases
        .run(
            "rtmp_legitimate_publish_and_play_after_the_attacks",
            legitimate_play(s, &legit),
        )
        .await;
    cases.finish("RTMP");
}

// ---- HTTP listener ----------------------------------------------------------------------------

const HEADER_TIMEOUT_SECS: u64 = 1;
const REQUEST_TIMEOUT_SECS: u64 = 5;
const HTTP_PER_IP: usize = 16;
const BLOCKING_PER_IP: usize = 4;
const SESSIONS_PER_TOKEN: usize = 4;
const WHIP_PER_IP: usize = 2;

fn header_deadline() -> Duration {
    Duration::from_secs(HEADER_TIMEOUT_SECS + 3)
}

async fn http_silent(server: &Server, ip: Ipv4Addr) -> Result<(), String> {
    let reply = raw_http(ip, server.http, b"", header_deadline()).await;
    closed_within(reply.ending, header_deadline(), "silent HTTP connection")
}

/// Slowloris: a request head one byte per 500 ms never completes in time.
async fn http_header_trickle(server: &Server, ip: Ipv4Addr) -> Result<(), String> {
    let mut socket = common::hostile::connect_from(ip, server.http)
        .await
        .map_err(|e| e.to_string())?;
    let head = format!("GET /livez HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n", "a".repeat(40));
    let started = Instant::now();
    let mut got = Vec::new();
    for byte in head.bytes() {
        use tokio::io::AsyncWriteExt;
        if socket.write_all(&[byte]).await.is_err() {
            break;
        }
        if let Ending::Closed(_) =
            common::hostile::read_until_closed(&mut socket, Duration::from_millis(500), &mut got).await
        {
            break;
        }
        if started.elapsed() > Duration::from_secs(12) {
            break;
        }
    }
    if common::hostile::status_of(&got) == Some(200) {
        return Err("a trickled request head was served".into());
    }
    closed_within(Ending::Closed(started.elapsed()), header_deadline(), "trickled head")
}

/// After one answered request, an idle keep-alive connection is closed.
async fn http_keepalive_idle(server: &Server, ip: Ipv4Addr) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = common::hostile::connect_from(ip, server.http)
        .await
        .map_err(|e| e.to_string())?;
    socket
        .write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), socket.read(&mut buf))
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| e.to_string())?;
    if common::hostile::status_of(&buf[..n]) != Some(200) {
        return Err(format!("livez answered {:?}", String::from_utf8_lossy(&buf[..n])));
    }
    let mut rest = Vec::new();
    let ending = common::hostile::read_until_closed(&mut socket, header_deadline(), &mut rest).await;
    closed_within(ending, header_deadline(), "idle keep-alive connection")
}

/// A body announced and never sent in full: the request timeout answers.
async fn http_body_trickle(server: &Server, ip: Ipv4Addr, admin: &str) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let mut socket = common::hostile::connect_from(ip, server.http)
        .await
        .map_err(|e| e.to_string())?;
    let head = format!(
        "POST /api/v1/apps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
    );
    socket.write_all(head.as_bytes()).await.map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut got = Vec::new();
    let limit = Duration::from_secs(REQUEST_TIMEOUT_SECS + 4);
    while started.elapsed() < limit {
        if socket.write_all(b" ").await.is_err() {
            break;
        }
        if let Ending::Closed(_) =
            common::hostile::read_until_closed(&mut socket, Duration::from_millis(500), &mut got).await
        {
            break;
        }
        if common::hostile::status_of(&got).is_some() {
            break;
        }
    }
    match common::hostile::status_of(&got) {
        Some(408) => Ok(()),
        None if started.elapsed() < limit => Ok(()),
        other => Err(format!("a trickled body got {other:?} after {:?}", started.elapsed())),
    }
}

async fn slow_http_cases(server: &Server, admin: &str, cases: &mut Cases<'_>) {
    let started = Instant::now();
    let (silent, trickle, idle, body) = tokio::join!(
        http_silent(server, client_ip(140)),
        http_header_trickle(server, client_ip(141)),
        http_keepalive_idle(server, client_ip(142)),
        http_body_trickle(server, client_ip(143), admin),
    );
    eprintln!("slow HTTP cases ran side by side in {:?}", started.elapsed());
    for (name, outcome) in [
        ("http_silent_connection_is_closed_by_the_header_timeout", silent),
        ("http_head_trickled_one_byte_per_500ms_is_closed", trickle),
        ("http_idle_keepalive_connection_is_closed", idle),
        ("http_body_trickled_gets_408_from_the_request_timeout", body),
    ] {
        cases.run(name, async { outcome }).await;
    }
}

/// Over the per-IP cap, connections are closed at once; those under it stay
/// open (until the 1 s header timeout), so "closed within 600 ms" tells them apart.
async fn http_per_ip_cap(server: &Server, ip: Ipv4Addr) -> Result<(), String> {
    let mut sockets = Vec::new();
    for _ in 0..HTTP_PER_IP + 24 {
        sockets.push(
            common::hostile::connect_from(ip, server.http)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    let endings = futures::future::join_all(sockets.iter_mut().map(|socket| async move {
        let mut got = Vec::new();
        common::hostile::read_until_closed(socket, Duration::from_millis(600), &mut got).await
    }))
    .await;
    let open = endings.iter().filter(|e| **e == Ending::Open).count();
    let refused = endings.len() - open;
    if open > HTTP_PER_IP || refused < 24 {
        return Err(format!(
            "{} connections from one IP: {open} kept, {refused} closed at once (cap {HTTP_PER_IP})",
            sockets.len()
        ));
    }
    Ok(())
}

/// The answer to a request the server must refuse: one of `allowed`, or the
/// connection closed without an answer when `close_ok`.
async fn refused_request(
    server: &Server,
    ip: Ipv4Addr,
    request: Vec<u8>,
    allowed: &[u16],
    close_ok: bool,
) -> Result<(), String> {
    let reply = raw_http(ip, server.http, &request, Duration::from_secs(8)).await;
    match reply.status {
        Some(status) if allowed.contains(&status) => Ok(()),
        None if close_ok && matches!(reply.ending, Ending::Closed(_)) => Ok(()),
        other => Err(format!(
            "answered {other:?} (want one of {allowed:?}): {}",
            reply.text().chars().take(300).collect::<String>()
        )),
    }
}

fn admin_post(path: &str, token: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend(body);
    request
}

fn chunked_admin_post(path: &str, token: &str, total: usize) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    let chunk = vec![b' '; 16 * 1024];
    for _ in 0..total / chunk.len() {
        request.extend(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend(&chunk);
        request.extend(b"\r\n");
    }
    request.extend(b"0\r\n\r\n");
    request
}

/// 300 requests with a made-up admin token: all 401, a handful of log lines.
async fn admin_401_flood(server: &Server, watch: &Watch) -> Result<(), String> {
    let before = watch.log_len();
    let client = common::http();
    for i in 0..300 {
        let status = client
            .get(format!("{}/api/v1/apps", server.base()))
            .bearer_auth(format!("pe_not_a_token_{i}"))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .status()
            .as_u16();
        if status != 401 {
            return Err(format!("request {i} answered {status}"));
        }
    }
    let lines = count_lines(&watch.log_since(before), "unknown or revoked");
    if lines > 5 {
        return Err(format!("300 bad tokens wrote {lines} warning lines"));
    }
    Ok(())
}

async fn ssrf_refused(server: &Server, admin: &str, url: &str) -> Result<(), String> {
    let (status, body) = server
        .api(admin, "POST", "/apps/app_default/webhooks", Some(json!({ "url": url })))
        .await;
    if (400..500).contains(&status) {
        Ok(())
    } else {
        Err(format!("{url} answered {status}: {body}"))
    }
}

/// App ids a spreadsheet would run as formulas reach the audit CSV defused.
async fn csv_formulas(server: &Server, admin: &str) -> Result<(), String> {
    let ids = ["=1+1", "+1", "-1", "@SUM(1)"];
    for id in ids {
        let path = format!("/apps/{}", id.replace('+', "%2B").replace('@', "%40"));
        server.api(admin, "DELETE", &path, None).await;
    }
    let response = common::http()
        .get(format!("{}/api/v1/audit.csv?action=app.delete", server.base()))
        .bearer_auth(admin)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let text = response.text().await.map_err(|e| e.to_string())?;
    for line in text.lines().skip(1) {
        for cell in line.split(',') {
            let cell = cell.trim_matches('"');
            if cell.starts_with(['=', '+', '-', '@']) {
                return Err(format!("formula cell {cell:?} in {line:?}"));
            }
        }
    }
    for id in ids {
        if !text.contains(&format!("'{id}")) {
            return Err(format!("no defused '{id} in:\n{text}"));
        }
    }
    Ok(())
}

fn mode_of(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).map_or(0, |m| m.permissions().mode() & 0o777)
}

fn secret_file_modes(data_dir: &std::path::Path) -> Result<(), String> {
    let dir = mode_of(data_dir);
    if dir != 0o700 {
        return Err(format!("data dir mode {dir:o}"));
    }
    for name in ["pulse-edge.db", "pulse-edge.db-wal", "pulse-edge.db-shm"] {
        let path = data_dir.join(name);
        if path.exists() && mode_of(&path) != 0o600 {
            return Err(format!("{name} mode {:o}", mode_of(&path)));
        }
    }
    Ok(())
}

async fn whip_bad_key(server: &Server, ip: Ipv4Addr, auth: Option<&str>) -> Result<(), String> {
    let body = "v=0\r\nthis is not an SDP offer \u{0}\u{1}";
    let mut request =
        "POST /whip HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/sdp\r\n".to_string();
    if let Some(auth) = auth {
        request.push_str(&format!("Authorization: {auth}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    refused_request(server, ip, request.into_bytes(), &[401], false).await
}

/// A minimal H.264 offer: enough for an answer, never followed by ICE.
const OFFER_H264: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
    m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\n\
    a=ice-pwd:0123456789012345678901\r\na=fingerprint:sha-256 00:11\r\na=setup:actpass\r\na=mid:0\r\n\
    a=sendonly\r\na=rtcp-mux\r\na=rtpmap:96 H264/90000\r\n\
    a=fmtp:96 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n";

/// WHIP sessions from one address, each with its own key: past the cap, refused.
async fn whip_per_ip(server: &Server, ip: Ipv4Addr, keys: &[String]) -> Result<(), String> {
    let mut statuses = Vec::new();
    for key in keys {
        let request = format!(
            "POST /whip HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/sdp\r\n\
             Authorization: Bearer {key}\r\nContent-Length: {}\r\n\r\n{OFFER_H264}",
            OFFER_H264.len()
        );
        statuses.push(
            raw_http(ip, server.http, request.as_bytes(), Duration::from_secs(10))
                .await
                .status,
        );
    }
    let created = statuses.iter().filter(|s| **s == Some(201)).count();
    let refused = statuses.iter().filter(|s| matches!(s, Some(429 | 503))).count();
    if created == 0 || created > WHIP_PER_IP || refused < keys.len() - WHIP_PER_IP {
        return Err(format!("statuses {statuses:?} (cap {WHIP_PER_IP} per IP)"));
    }
    Ok(())
}

fn traversal_paths(stream_id: &str) -> Vec<String> {
    [
        "/live/../../pulse-edge.db",
        "/live/%2e%2e/%2e%2e/pulse-edge.db",
        "/live/{id}/..%2f..%2fpulse-edge.db",
        "/live/{id}/360p/..%2f..%2f..%2fplayback-signing.key",
        "/live/{id}/360p/..\\..\\..\\pulse-edge.db",
        "/live/{id}/360p/%5c..%5c..%5cpulse-edge.db",
        "/live/{id}/key/..%2f..%2fplayback-signing.key",
        "/live/{id}/%2e%2e%2f%2e%2e%2fpulse-edge.db/index.m3u8",
        "/vod/..%2f..%2fpulse-edge.db/master.m3u8",
        "/live/%00/master.m3u8",
        "/api/v1/../../pulse-edge.db",
        "/api/v1/apps/..%2f..%2fadmin-tokens",
    ]
    .iter()
    .map(|p| p.replace("{id}", stream_id))
    .collect()
}

/// Never a 200, never a byte of the database or the signing key.
async fn traversal(server: &Server, ip: Ipv4Addr, path: &str, admin: &str, key_hex: &str) -> Result<(), String> {
    let auth = format!("Bearer {admin}");
    let request = get_request(path, &[("Authorization", &auth)]);
    let reply = raw_http(ip, server.http, &request, Duration::from_secs(5)).await;
    let text = reply.text();
    if text.contains("SQLite format") || text.contains(key_hex) {
        return Err("served a secret file".into());
    }
    match reply.status {
        Some(200..=299) => Err(format!("answered {:?}", reply.status)),
        _ => Ok(()),
    }
}

/// A token the server must refuse for `stream`: 401 or 403.
async fn forged(server: &Server, stream: &StreamInfo, token: &str) -> Result<(), String> {
    let url = format!("{}/live/{}/master.m3u8?token={token}", server.base(), stream.id);
    let (status, body) = get_text(&url).await;
    if status == 401 || status == 403 {
        Ok(())
    } else {
        Err(format!("answered {status}: {body}"))
    }
}

fn forgeries(stream: &StreamInfo, other: &StreamInfo, key: &[u8]) -> Vec<(&'static str, String)> {
    let now = unix_now();
    let claims = |sub: &str, iat: u64, exp: u64| json!({ "sub": sub, "iat": iat, "exp": exp });
    let good = stream.token();
    let none_header = common::hostile::b64url(br#"{"alg":"none","typ":"JWT"}"#);
    let none_body = common::hostile::b64url(claims(&stream.id, now, now + 600).to_string().as_bytes());
    let kid_header = common::hostile::b64url(br#"{"alg":"HS256","typ":"JWT","kid":"pk_forged"}"#);
    let valid = hs256(&claims(&stream.id, now, now + 600), key);
    let valid_sig = valid.rsplit('.').next().unwrap_or_default().to_string();
    vec![
        ("token_alg_none", format!("{none_header}.{none_body}.")),
        (
            "token_signed_with_another_key",
            hs256(&claims(&stream.id, now, now + 600), b"not-the-server-key"),
        ),
        ("token_expired", hs256(&claims(&stream.id, now - 7200, now - 3600), key)),
        (
            "token_not_yet_valid",
            hs256(&json!({ "sub": stream.id, "nbf": now + 3600, "exp": now + 7200 }), key),
        ),
        ("token_of_another_stream", other.token()),
        ("token_truncated", good[..good.len() - 6].to_string()),
        ("token_signature_swapped_onto_other_claims", {
            let body = common::hostile::b64url(claims(&other.id, now, now + 600).to_string().as_bytes());
            let head = valid.split('.').next().unwrap_or_default();
            format!("{head}.{body}.{valid_sig}")
        }),
        ("token_unknown_kid", format!("{kid_header}.{none_body}.{valid_sig}")),
        ("token_garbage", "%00%ff..".into()),
        ("token_empty", String::new()),
    ]
}

/// Many master playlist requests under one token: past the cap, 429.
async fn sessions_per_token(server: &Server, stream: &StreamInfo, key: &[u8]) -> Result<(), String> {
    let now = unix_now();
    let token = hs256(&json!({ "sub": stream.id, "iat": now, "exp": now + 601 }), key);
    let url = format!("{}/live/{}/master.m3u8?token={token}", server.base(), stream.id);
    let mut statuses = Vec::new();
    for _ in 0..SESSIONS_PER_TOKEN + 6 {
        statuses.push(get_text(&url).await.0);
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    if ok > SESSIONS_PER_TOKEN || limited < 6 || ok == 0 {
        return Err(format!("statuses {statuses:?} (cap {SESSIONS_PER_TOKEN} per token)"));
    }
    Ok(())
}

/// Blocking playlist requests held at once by one client: past the cap, 429.
async fn blocking_per_ip(server: &Server, stream: &StreamInfo, ip: Ipv4Addr) -> Result<(), String> {
    let (status, master) = get_text(&stream.playback_url).await;
    if status != 200 {
        return Err(format!("master playlist {status}"));
    }
    let variant = first_variant_uri(&master);
    let url = stream.url(&server.base(), &variant);
    let (_, text) = get_text(&url).await;
    let next = MediaPlaylist::parse(&text).last_msn().ok_or("no msn")? + 1;
    let path = url
        .split_once(&server.http.to_string())
        .map(|(_, p)| p.to_string())
        .unwrap_or_default();
    let sep = if path.contains('?') { '&' } else { '?' };
    let request = get_request(&format!("{path}{sep}_HLS_msn={next}"), &[]);
    let requests = (0..BLOCKING_PER_IP + 8).map(|_| raw_http(ip, server.http, &request, Duration::from_secs(10)));
    let statuses: Vec<Option<u16>> = futures::future::join_all(requests)
        .await
        .into_iter()
        .map(|r| r.status)
        .collect();
    let ok = statuses.iter().filter(|s| **s == Some(200)).count();
    let limited = statuses.iter().filter(|s| **s == Some(429)).count();
    if ok == 0 || limited < 8 {
        return Err(format!("statuses {statuses:?} (cap {BLOCKING_PER_IP} held per IP)"));
    }
    Ok(())
}

/// Timeouts and caps of the HTTP listener, and oversized requests.
async fn http_listener_cases(s: &Server, admin: &str, cases: &mut Cases<'_>) {
    slow_http_cases(s, admin, cases).await;

    cases
        .run(
            "http_connections_over_the_per_ip_cap",
            http_per_ip_cap(s, client_ip(101)),
        )
        .await;
    let big_header = get_request("/livez", &[("X-Big", &"b".repeat(1 << 20))]);
    cases
        .run(
            "http_1mib_header_is_refused",
            refused_request(s, client_ip(102), big_header, &[400, 431], true),
        )
        .await;
    let many: Vec<(String, String)> = (0..10_000).map(|i| (format!("X-H{i}"), "v".into())).collect();
    let many_refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let many_headers = get_request("/livez", &many_refs);
    cases
        .run(
            "http_10000_headers_are_refused",
            refused_request(s, client_ip(103), many_headers, &[400, 431], true),
        )
        .await;
    let long_uri = get_request(&format!("/live/{}/master.m3u8", "a".repeat(64 * 1024)), &[]);
    cases
        .run(
            "http_64kib_request_line_is_refused",
            refused_request(s, client_ip(104), long_uri, &[400, 404, 414, 431], true),
        )
        .await;
}

/// The admin API: bodies, authentication, webhook addresses, CSV exports.
async fn admin_cases(s: &Server, admin: &str, cases: &mut Cases<'_>) {
    let watch = cases.watch;
    let body = vec![b' '; 1 << 20];
    cases
        .run(
            "admin_1mib_body_gets_413",
            refused_request(
                s,
                client_ip(105),
                admin_post("/api/v1/apps", admin, &body),
                &[413],
                false,
            ),
        )
        .await;
    cases
        .run(
            "admin_1mib_chunked_body_gets_413",
            refused_request(
                s,
                client_ip(106),
                chunked_admin_post("/api/v1/apps", admin, 1 << 20),
                &[413],
                false,
            ),
        )
        .await;
    cases
        .run(
            "admin_1mib_body_without_a_token_is_refused",
            refused_request(
                s,
                client_ip(107),
                admin_post("/api/v1/apps", "nope", &body),
                &[401, 413],
                false,
            ),
        )
        .await;
    cases
        .run("admin_authorization_scheme_is_case_insensitive", async {
            let auth = format!("BEARER {admin}");
            let reply = raw_http(
                client_ip(108),
                s.http,
                &get_request("/api/v1/apps", &[("Authorization", &auth)]),
                Duration::from_secs(5),
            )
            .await;
            match reply.status {
                Some(200) => Ok(()),
                other => Err(format!("`BEARER` answered {other:?}")),
            }
        })
        .await;
    cases
        .run("admin_401_flood_is_logged_rate_limited", admin_401_flood(s, watch))
        .await;
    for url in [
        "http://[2002:7f00:1::]/hook",
        "http://[::ffff:0:7f00:1]/hook",
        "http://[fec0::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[64:ff9b::a00:1]/hook",
        "http://2130706433/hook",
        "http://0x7f.1/hook",
        "http://127.1/hook",
        "http://[::]/hook",
    ] {
        cases
            .run(&format!("webhook_ssrf_refused {url}"), ssrf_refused(s, admin, url))
            .await;
    }
    cases.run("csv_export_cells_are_defused", csv_formulas(s, admin)).await;
}

async fn whip_cases(s: &Server, cases: &mut Cases<'_>) {
    cases
        .run(
            "whip_bad_key_with_garbage_sdp_gets_401",
            whip_bad_key(s, client_ip(109), Some("Bearer live_nope")),
        )
        .await;
    cases
        .run(
            "whip_no_key_with_garbage_sdp_gets_401",
            whip_bad_key(s, client_ip(110), None),
        )
        .await;
    let whip_keys: Vec<String> = (0..4)
        .map(|i| s.create_stream(&format!("whip-{i}"), Some("passthrough")).stream_key)
        .collect();
    cases
        .run(
            "whip_sessions_capped_per_ip",
            whip_per_ip(s, client_ip(112), &whip_keys),
        )
        .await;
}

/// A live stream: traversal next to it, forged tokens for it, caps on its
/// viewers; it still plays at the end.
async fn playback_cases(s: &Server, admin: &str, data_dir: &std::path::Path, cases: &mut Cases<'_>) {
    let stream = s.create_stream("legit", Some("small"));
    let other = s.create_stream("other", Some("passthrough"));
    let key = server_signing_key(data_dir);
    let key_hex = hex::encode(&key);
    let _publisher = Source::small().publish(&stream.publish_url());
    cases
        .run(
            "http_legitimate_publish_and_play_under_attack_limits",
            legitimate_play(s, &stream),
        )
        .await;
    for (i, path) in traversal_paths(&stream.id).into_iter().enumerate() {
        let ip = client_ip(150 + i as u8);
        cases
            .run(&format!("traversal {path}"), traversal(s, ip, &path, admin, &key_hex))
            .await;
    }
    for (name, token) in forgeries(&stream, &other, &key) {
        cases.run(name, forged(s, &stream, &token)).await;
    }
    cases
        .run("viewer_sessions_capped_per_token", sessions_per_token(s, &stream, &key))
        .await;
    let viewer = fresh_viewer(&stream, &key);
    cases
        .run(
            "blocking_playlist_requests_capped_per_ip",
            blocking_per_ip(s, &viewer, client_ip(111)),
        )
        .await;
    cases
        .run("playback_token_never_reaches_the_log", async {
            let token = stream.token();
            match s.log().lines().find(|l| l.contains(&token)) {
                Some(line) => Err(format!("logged: {}", line.chars().take(300).collect::<String>())),
                None => Ok(()),
            }
        })
        .await;
    // A new viewer: the first one's token has used up its sessions by now.
    let viewer = fresh_viewer(&stream, &key);
    cases
        .run("http_legitimate_play_after_the_attacks", legitimate_play(s, &viewer))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_control_hostile_inputs_are_refused_and_the_server_keeps_serving() {
    // A data dir the server creates itself, to check the modes it gives it.
    let parent = tempfile::tempdir().expect("tmp");
    let data_dir = parent.path().join("state");
    let data_dir_s = data_dir.display().to_string();
    let server = Server::start_with(&[
        ("PULSE_DATA_DIR", &data_dir_s),
        ("PULSE_HTTP_HEADER_READ_TIMEOUT_SECS", "1"),
        ("PULSE_HTTP_REQUEST_TIMEOUT_SECS", "5"),
        ("PULSE_HTTP_MAX_CONNECTIONS_PER_IP", "16"),
        ("PULSE_HTTP_MAX_BLOCKING_PER_IP", "4"),
        ("PULSE_VIEWERS_MAX_SESSIONS_PER_TOKEN", "4"),
        ("PULSE_WHIP_MAX_SESSIONS_PER_IP", "2"),
        ("PULSE_WHIP_IDLE_TIMEOUT_SECS", "2"),
        // Debug spans of every request: a token in a URI must still not reach the log.
        ("RUST_LOG", "info,tower_http=debug,sqlx=warn"),
    ]);
    let watch = Watch::new(&server).await;
    let mut cases = Cases::new(&watch);
    let s = &server;
    let admin = server.global_admin_token();
    cases
        .run("demo_stream_key_not_printed_without_a_terminal", async {
            match server
                .log()
                .lines()
                .find(|l| l.contains("Stream key:") || holds_stream_key(l))
            {
                Some(line) => Err(format!("printed: {line}")),
                None => Ok(()),
            }
        })
        .await;
    cases
        .run("data_dir_0700_and_database_0600", async {
            secret_file_modes(&data_dir)
        })
        .await;
    http_listener_cases(s, &admin, &mut cases).await;
    admin_cases(s, &admin, &mut cases).await;
    whip_cases(s, &mut cases).await;
    playback_cases(s, &admin, &data_dir, &mut cases).await;
    cases.finish("HTTP and control");
}

/// Whether `line` holds a whole stream key (`live_<scope>_<32 hex>`; the
/// redacted form keeps 4 of the hex digits).
fn holds_stream_key(line: &str) -> bool {
    line.match_indices("live_").any(|(at, _)| {
        let rest = &line[at + 5..];
        let Some(sep) = rest.get(..rest.len().min(17)).and_then(|head| head.find('_')) else {
            return false;
        };
        let secret = &rest.as_bytes()[sep + 1..];
        secret.len() >= 32 && secret[..32].iter().all(u8::is_ascii_hexdigit)
    })
}

/// `stream` as a new viewer sees it: its own token, signed with the server's key.
fn fresh_viewer(stream: &StreamInfo, key: &[u8]) -> StreamInfo {
    let now = unix_now();
    let token = hs256(&json!({ "sub": stream.id, "iat": now, "exp": now + 3599 }), key);
    let base = stream.playback_url.split_once("token=").map_or("", |(b, _)| b);
    StreamInfo {
        playback_url: format!("{base}token={token}"),
        ..stream.clone()
    }
}

/// A published stream plays: its playlist and a segment, fetched with the token.
async fn legitimate_play(server: &Server, stream: &StreamInfo) -> Result<(), String> {
    let livez = get_request("/livez", &[]);
    if raw_http(Ipv4Addr::LOCALHOST, server.http, &livez, Duration::from_secs(5))
        .await
        .status
        != Some(200)
    {
        return Err("the server is gone (no answer on /livez)".into());
    }
    let master = wait_until_live(server, stream, Duration::from_secs(40)).await;
    let url = stream.url(&server.base(), &first_variant_uri(&master));
    let (status, text) = get_text(&url).await;
    let playlist = MediaPlaylist::parse(&text);
    let segment = playlist.segments.last().ok_or(format!("no segment ({status})"))?;
    let base = url.rsplit_once('/').map(|(b, _)| b).unwrap_or_default();
    let bytes = common::get_bytes(&format!("{base}/{}", segment.uri)).await;
    if bytes.is_empty() {
        return Err("empty segment".into());
    }
    Ok(())
}

// ---- total caps -------------------------------------------------------------------------------

const TOTAL_CAP: usize = 6;

/// `TOTAL_CAP` RTMP connections from as many addresses hold every slot: one
/// more, from yet another address, is closed before the handshake.
async fn rtmp_total_cap(server: &Server) -> Result<(), String> {
    let mut held = Vec::new();
    for i in 0..TOTAL_CAP {
        held.push(Rtmp::connected(Ipv4Addr::new(127, 0, 2, 1 + i as u8), server.rtmp).await?);
    }
    let mut extra = Rtmp::open(Ipv4Addr::new(127, 0, 2, 100), server.rtmp)
        .await
        .map_err(|e| e.to_string())?;
    let _ = send_or_closed(&mut extra, &c0c1(3)).await;
    match extra.ending(Duration::from_secs(2)).await {
        Ending::Closed(_) if extra.received.is_empty() => Ok(()),
        Ending::Closed(_) => Err("answered the handshake, then closed".into()),
        Ending::Open => Err(format!("a connection over rtmp.max_connections={TOTAL_CAP} was served")),
    }
}

/// The same for HTTP: idle sockets hold every slot, one more is closed at once.
async fn http_total_cap(server: &Server) -> Result<(), String> {
    let mut held = Vec::new();
    for i in 0..TOTAL_CAP {
        let socket = common::hostile::connect_from(Ipv4Addr::new(127, 0, 3, 1 + i as u8), server.http)
            .await
            .map_err(|e| e.to_string())?;
        held.push(socket);
    }
    // The listener accepts in arrival order, so the extra socket is taken after the held ones.
    let request = get_request("/livez", &[]);
    let extra = raw_http(
        Ipv4Addr::new(127, 0, 3, 100),
        server.http,
        &request,
        Duration::from_secs(2),
    )
    .await;
    let refused = match (extra.status, extra.ending) {
        (None, Ending::Closed(after)) if after < Duration::from_secs(1) => Ok(()),
        other => Err(format!(
            "a connection over http.max_connections={TOTAL_CAP} got {other:?}"
        )),
    };
    // A slot comes back when the server sees its socket close, not when we
    // drop it: wait for that, as a retrying client would, before the
    // liveness check (which needs a slot itself).
    drop(held);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let probe = raw_http(Ipv4Addr::LOCALHOST, server.http, &request, Duration::from_secs(1)).await;
        if probe.status == Some(200) {
            return refused;
        }
        if tokio::time::Instant::now() >= deadline {
            return refused.and(Err("no slot came back within 3 s of the held sockets closing".into()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_connection_caps_close_new_sockets_at_once() {
    let cap = TOTAL_CAP.to_string();
    let server = Server::start_with(&[
        ("PULSE_RTMP_MAX_CONNECTIONS", &cap),
        ("PULSE_HTTP_MAX_CONNECTIONS", &cap),
    ]);
    let watch = Watch::new(&server).await;
    let mut cases = Cases::new(&watch);
    cases
        .run("rtmp_connection_over_the_total_cap", rtmp_total_cap(&server))
        .await;
    cases
        .run("http_connection_over_the_total_cap", http_total_cap(&server))
        .await;
    let stream = server.create_stream("legit", Some("passthrough"));
    let _publisher = Source::small().publish(&stream.publish_url());
    cases
        .run(
            "caps_legitimate_publish_and_play_once_slots_are_free",
            legitimate_play(&server, &stream),
        )
        .await;
    cases.finish("total caps");
}

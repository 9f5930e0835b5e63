//! Tools of a hostile client, for tests/hostile.rs: a raw RTMP client (handshake,
//! chunks, AMF0), raw HTTP over a socket, connections from chosen loopback
//! addresses (127.0.0.0/8 is all ours, so each attack gets its own "client IP"
//! and per-IP caps do not catch the legitimate publisher), and a watch on the
//! server process (alive, fast `/livez`, bounded RSS and fds). Nothing here
//! comes from src/: the tests talk to the binary over sockets only.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::Server;

// ---- the server process -------------------------------------------------------------

/// The pid of `server`'s process: the `pulse-edge serve` whose environment
/// names its HTTP address (the harness keeps the child private).
pub fn server_pid(server: &Server) -> u32 {
    let wanted = format!("PULSE_HTTP_LISTEN={}", server.http);
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            cmdline.split(|b| *b == 0).nth(1) == Some(b"serve")
                && environ.split(|b| *b == 0).any(|kv| kv == wanted.as_bytes())
        })
        .expect("the server's pid in /proc")
}

pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// What "still healthy" means after a hostile case, against a baseline taken
/// before the first one.
pub struct Watch {
    pub pid: u32,
    http: SocketAddr,
    base_rss_kib: u64,
    base_fds: usize,
    pub log_path: std::path::PathBuf,
}

/// RSS a case may add (debug build; the attacks are bounded far below this
/// once the caps work: 40 connections × 8 MiB was the defect).
pub const RSS_GROWTH_LIMIT_KIB: u64 = 200 * 1024;
/// Descriptors a case may leave open once its sockets are closed (database,
/// timers and worker pipes come and go).
pub const FD_SLACK: usize = 64;

impl Watch {
    pub async fn new(server: &Server) -> Self {
        let pid = server_pid(server);
        let watch = Self {
            pid,
            http: server.http,
            base_rss_kib: rss_kib(pid),
            base_fds: fd_count(pid),
            log_path: server.data_dir.path().join("server.log"),
        };
        watch.livez_ms().await.expect("livez before any case");
        watch
    }

    /// `/livez` round trip over a fresh connection, in ms; Err when it fails.
    pub async fn livez_ms(&self) -> Result<u128, String> {
        let started = Instant::now();
        let request = "GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let reply = raw_http(
            Ipv4Addr::LOCALHOST,
            self.http,
            request.as_bytes(),
            Duration::from_secs(5),
        )
        .await;
        match reply.status {
            Some(200) => Ok(started.elapsed().as_millis()),
            other => Err(format!("livez answered {other:?} after {:?}", started.elapsed())),
        }
    }

    pub fn log_len(&self) -> u64 {
        file_len(&self.log_path)
    }

    /// The server's log written since `from` (a byte offset from `log_len`).
    pub fn log_since(&self, from: u64) -> String {
        let all = std::fs::read(&self.log_path).unwrap_or_default();
        String::from_utf8_lossy(all.get(from as usize..).unwrap_or_default()).into_owned()
    }

    /// After `case`: the process answers `/livez` within 500 ms, RSS grew by
    /// less than the limit, and its fds return near the baseline (sockets
    /// the case opened get closed) within 8 s.
    pub async fn check(&self, case: &str) -> Result<(), String> {
        let ms = self
            .livez_ms()
            .await
            .map_err(|e| format!("[{case}] the server is not alive: {e}"))?;
        if ms >= 500 {
            return Err(format!("[{case}] /livez took {ms} ms"));
        }
        let rss = rss_kib(self.pid);
        if rss >= self.base_rss_kib + RSS_GROWTH_LIMIT_KIB {
            return Err(format!("[{case}] RSS {rss} KiB, baseline {} KiB", self.base_rss_kib));
        }
        let deadline = Instant::now() + Duration::from_secs(8);
        loop {
            let fds = fd_count(self.pid);
            if fds <= self.base_fds + FD_SLACK {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("[{case}] {fds} fds still open, baseline {}", self.base_fds));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

// ---- sockets --------------------------------------------------------------------------

/// A TCP connection to `dst` from `src` (any 127.x.y.z works on Linux loopback).
pub async fn connect_from(src: Ipv4Addr, dst: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((src, 0)))?;
    tokio::time::timeout(Duration::from_secs(5), socket.connect(dst))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}

/// How a socket ended while we waited on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// EOF or reset from the server, after this long.
    Closed(Duration),
    /// Still open when we stopped waiting.
    Open,
}

/// Reads (and keeps) what the server sends until it closes or `timeout` passes.
pub async fn read_until_closed(socket: &mut TcpStream, timeout: Duration, into: &mut Vec<u8>) -> Ending {
    let started = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, socket.read(&mut buf)).await {
            Err(_) => return Ending::Open,
            Ok(Ok(0)) | Ok(Err(_)) => return Ending::Closed(started.elapsed()),
            Ok(Ok(n)) => into.extend_from_slice(&buf[..n]),
        }
    }
}

pub struct HttpReply {
    pub status: Option<u16>,
    pub raw: Vec<u8>,
    pub ending: Ending,
}

impl HttpReply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }
}

/// Sends `request` as is (no normalisation of the path) and reads the reply
/// until the server closes or `timeout` passes.
pub async fn raw_http(src: Ipv4Addr, dst: SocketAddr, request: &[u8], timeout: Duration) -> HttpReply {
    let mut raw = Vec::new();
    let ending = match connect_from(src, dst).await {
        Err(_) => Ending::Closed(Duration::ZERO),
        Ok(mut socket) => match socket.write_all(request).await {
            Err(_) => Ending::Closed(Duration::ZERO),
            Ok(()) => read_until_closed(&mut socket, timeout, &mut raw).await,
        },
    };
    HttpReply {
        status: status_of(&raw),
        raw,
        ending,
    }
}

/// The status code of the first HTTP response in `raw`.
pub fn status_of(raw: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(raw.get(..raw.len().min(64))?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// A GET over its own connection, headers as given.
pub fn get_request(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut text = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("\r\n");
    text.into_bytes()
}

// ---- AMF0 -------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub enum Amf {
    Num(f64),
    Str(String),
    Null,
    Obj(Vec<(String, Amf)>),
}

pub fn amf_encode(values: &[Amf]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        amf_value(&mut out, v);
    }
    out
}

fn amf_value(out: &mut Vec<u8>, v: &Amf) {
    match v {
        Amf::Num(n) => {
            out.push(0x00);
            out.extend(n.to_be_bytes());
        }
        Amf::Str(s) if s.len() > 0xffff => {
            out.push(0x0c);
            out.extend((s.len() as u32).to_be_bytes());
            out.extend(s.as_bytes());
        }
        Amf::Str(s) => {
            out.push(0x02);
            out.extend((s.len() as u16).to_be_bytes());
            out.extend(s.as_bytes());
        }
        Amf::Null => out.push(0x05),
        Amf::Obj(props) => {
            out.push(0x03);
            for (k, v) in props {
                out.extend((k.len() as u16).to_be_bytes());
                out.extend(k.as_bytes());
                amf_value(out, v);
            }
            out.extend([0, 0, 0x09]);
        }
    }
}

/// A `connect` command for `app`, as ffmpeg sends it.
pub fn connect_command(app: &str, dst: SocketAddr) -> Vec<u8> {
    amf_encode(&[
        Amf::Str("connect".into()),
        Amf::Num(1.0),
        Amf::Obj(vec![
            ("app".into(), Amf::Str(app.into())),
            ("type".into(), Amf::Str("nonprivate".into())),
            ("flashVer".into(), Amf::Str("FMLE/3.0".into())),
            ("tcUrl".into(), Amf::Str(format!("rtmp://{dst}/live"))),
        ]),
    ])
}

/// A `connect` whose command object nests `depth` objects (or strict arrays).
pub fn deep_connect_command(depth: usize, arrays: bool) -> Vec<u8> {
    let mut out = amf_encode(&[Amf::Str("connect".into()), Amf::Num(1.0)]);
    out.push(0x03);
    for _ in 0..depth {
        out.extend([0, 1, b'a']);
        if arrays {
            out.push(0x0a);
            out.extend(1u32.to_be_bytes());
        } else {
            out.push(0x03);
        }
    }
    // Whatever the decoder makes of it, the message ends here.
    out.extend([0, 0, 0x09]);
    out
}

// ---- RTMP --------------------------------------------------------------------------------

/// A raw RTMP client: whatever bytes the test wants, in valid chunks or not.
pub struct Rtmp {
    pub socket: TcpStream,
    pub dst: SocketAddr,
    /// Our outbound chunk size.
    pub chunk_size: usize,
    /// Spec-breaking clients omit the extended timestamp on type-3 chunks.
    pub omit_ext_on_type3: bool,
    /// Everything the server sent so far.
    pub received: Vec<u8>,
}

pub const C1_LEN: usize = 1536;

fn basic_header(fmt: u8, csid: u32) -> Vec<u8> {
    match csid {
        0..=63 => vec![(fmt << 6) | csid as u8],
        64..=319 => vec![fmt << 6, (csid - 64) as u8],
        _ => {
            let v = csid - 64;
            vec![(fmt << 6) | 1, (v & 0xff) as u8, (v >> 8) as u8]
        }
    }
}

fn u24(v: u32) -> [u8; 3] {
    let b = v.to_be_bytes();
    [b[1], b[2], b[3]]
}

/// A type-0 chunk header announcing a message of `length` bytes (no payload).
pub fn type0_header(csid: u32, type_id: u8, length: u32, timestamp: u32) -> Vec<u8> {
    let mut out = basic_header(0, csid);
    out.extend(u24(timestamp.min(0xff_ffff)));
    out.extend(u24(length));
    out.push(type_id);
    out.extend(1u32.to_le_bytes());
    if timestamp >= 0xff_ffff {
        out.extend(timestamp.to_be_bytes());
    }
    out
}

impl Rtmp {
    /// TCP only, from `src`.
    pub async fn open(src: Ipv4Addr, dst: SocketAddr) -> std::io::Result<Self> {
        let socket = connect_from(src, dst).await?;
        socket.set_nodelay(true)?;
        Ok(Self {
            socket,
            dst,
            chunk_size: 128,
            omit_ext_on_type3: false,
            received: Vec::new(),
        })
    }

    /// TCP and a plain handshake (C0, C1, S0-S2, C2).
    pub async fn connected(src: Ipv4Addr, dst: SocketAddr) -> Result<Self, String> {
        let mut client = Self::open(src, dst).await.map_err(|e| format!("connect: {e}"))?;
        client.handshake().await?;
        Ok(client)
    }

    pub async fn handshake(&mut self) -> Result<(), String> {
        let mut c0c1 = vec![3u8];
        c0c1.extend(vec![0u8; C1_LEN]);
        self.send_raw(&c0c1).await.map_err(|e| format!("C0C1: {e}"))?;
        let mut s = vec![0u8; 1 + 2 * C1_LEN];
        tokio::time::timeout(Duration::from_secs(5), self.socket.read_exact(&mut s))
            .await
            .map_err(|_| "no S0S1S2 within 5 s".to_string())?
            .map_err(|e| format!("S0S1S2: {e}"))?;
        let s1 = s[1..1 + C1_LEN].to_vec();
        self.send_raw(&s1).await.map_err(|e| format!("C2: {e}"))
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        tokio::time::timeout(Duration::from_secs(5), self.socket.write_all(bytes))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write blocked for 5 s"))?
    }

    /// One message as chunks: a type-0 header, then type-3 continuations.
    pub fn chunks(&self, csid: u32, type_id: u8, stream_id: u32, timestamp: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = basic_header(0, csid);
        let extended = timestamp >= 0xff_ffff;
        out.extend(u24(timestamp.min(0xff_ffff)));
        out.extend(u24(payload.len() as u32));
        out.push(type_id);
        out.extend(stream_id.to_le_bytes());
        if extended {
            out.extend(timestamp.to_be_bytes());
        }
        for (i, piece) in payload.chunks(self.chunk_size.max(1)).enumerate() {
            if i > 0 {
                out.extend(basic_header(3, csid));
                if extended && !self.omit_ext_on_type3 {
                    out.extend(timestamp.to_be_bytes());
                }
            }
            out.extend(piece);
        }
        out
    }

    pub async fn send(
        &mut self,
        csid: u32,
        type_id: u8,
        stream_id: u32,
        timestamp: u32,
        payload: &[u8],
    ) -> std::io::Result<()> {
        let bytes = self.chunks(csid, type_id, stream_id, timestamp, payload);
        self.send_raw(&bytes).await
    }

    /// Set Chunk Size with `size` as sent; our own chunking follows it
    /// (within reason: we never need chunks above 64 KiB).
    pub async fn set_chunk_size(&mut self, size: u32) -> std::io::Result<()> {
        self.send(2, 1, 0, 0, &size.to_be_bytes()).await?;
        self.chunk_size = (size & 0x7fff_ffff).clamp(1, 65536) as usize;
        Ok(())
    }

    pub async fn command(&mut self, stream_id: u32, body: &[u8]) -> std::io::Result<()> {
        self.send(3, 20, stream_id, 0, body).await
    }

    /// Reads until `needle` shows up in what the server sent; false when the
    /// connection ends or `timeout` passes first.
    pub async fn wait_for(&mut self, needle: &str, timeout: Duration) -> bool {
        let started = Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if contains(&self.received, needle.as_bytes()) {
                return true;
            }
            let left = timeout.saturating_sub(started.elapsed());
            match tokio::time::timeout(left, self.socket.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => self.received.extend_from_slice(&buf[..n]),
                _ => return false,
            }
        }
    }

    /// Waits up to `timeout` for the server to close the connection.
    pub async fn ending(&mut self, timeout: Duration) -> Ending {
        read_until_closed(&mut self.socket, timeout, &mut self.received).await
    }

    /// `connect` to `app` and wait for NetConnection.Connect.Success.
    pub async fn connect_app(&mut self, app: &str) -> Result<(), String> {
        let body = connect_command(app, self.dst);
        self.command(0, &body).await.map_err(|e| format!("connect: {e}"))?;
        if self
            .wait_for("NetConnection.Connect.Success", Duration::from_secs(5))
            .await
        {
            Ok(())
        } else {
            Err("no NetConnection.Connect.Success".into())
        }
    }

    /// createStream + publish `key` on stream 1; waits for the answer
    /// (Publish.Start, or the error code the server sent).
    pub async fn publish(&mut self, key: &str) -> Result<(), String> {
        let create = amf_encode(&[Amf::Str("createStream".into()), Amf::Num(2.0), Amf::Null]);
        self.command(0, &create)
            .await
            .map_err(|e| format!("createStream: {e}"))?;
        let publish = amf_encode(&[
            Amf::Str("publish".into()),
            Amf::Num(3.0),
            Amf::Null,
            Amf::Str(key.into()),
            Amf::Str("live".into()),
        ]);
        self.command(1, &publish).await.map_err(|e| format!("publish: {e}"))?;
        if self.wait_for("NetStream.Publish.Start", Duration::from_secs(10)).await {
            Ok(())
        } else {
            Err(format!(
                "no NetStream.Publish.Start; server sent: {}",
                String::from_utf8_lossy(&self.received).replace(|c: char| !c.is_ascii_graphic(), ".")
            ))
        }
    }

    /// Handshake, connect to `live`, publish `key`.
    pub async fn publisher(src: Ipv4Addr, dst: SocketAddr, key: &str) -> Result<Self, String> {
        let mut client = Self::connected(src, dst).await?;
        client.set_chunk_size(4096).await.map_err(|e| e.to_string())?;
        client.connect_app("live").await?;
        client.publish(key).await?;
        Ok(client)
    }

    /// An FLV tag as an RTMP message on stream 1 (audio on csid 4, video on 6).
    pub async fn send_tag(&mut self, tag: &FlvTag, timestamp: u32) -> std::io::Result<()> {
        let csid = if tag.kind == 8 { 4 } else { 6 };
        self.send(csid, tag.kind, 1, timestamp, &tag.data).await
    }

    pub fn got(&self, needle: &str) -> bool {
        contains(&self.received, needle.as_bytes())
    }
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

// ---- FLV ---------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct FlvTag {
    /// 8 audio, 9 video, 18 script data.
    pub kind: u8,
    pub timestamp: u32,
    pub data: Vec<u8>,
}

impl FlvTag {
    /// AVC or AAC sequence header.
    pub fn is_config(&self) -> bool {
        match self.kind {
            9 => self.data.get(1) == Some(&0),
            8 => self.data.first().is_some_and(|b| b >> 4 == 10) && self.data.get(1) == Some(&0),
            _ => false,
        }
    }
    pub fn is_keyframe(&self) -> bool {
        self.kind == 9 && self.data.first().is_some_and(|b| b >> 4 == 1) && !self.is_config()
    }
}

/// `seconds` of 320x180 H.264 (1 s GOP, no B-frames) and AAC as FLV tags,
/// made by ffmpeg in `dir`.
pub fn small_flv(dir: &Path, seconds: u32) -> Vec<FlvTag> {
    let path = dir.join("small.flv");
    let out = std::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=25",
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000"])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-g",
            "25",
            "-bf",
            "0",
        ])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-f", "flv"])
        .arg(&path)
        .output()
        .expect("run ffmpeg");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    parse_flv(&std::fs::read(&path).expect("flv"))
}

pub fn parse_flv(bytes: &[u8]) -> Vec<FlvTag> {
    let mut tags = Vec::new();
    let mut pos = 9 + 4;
    while let Some(h) = bytes.get(pos..pos + 11) {
        let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        let timestamp = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
        let Some(data) = bytes.get(pos + 11..pos + 11 + size) else {
            break;
        };
        tags.push(FlvTag {
            kind: h[0],
            timestamp,
            data: data.to_vec(),
        });
        pos += 11 + size + 4;
    }
    tags
}

// ---- playback tokens -------------------------------------------------------------------

pub fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An HS256 JWT over `claims` with `secret` (a forger's or the server's).
pub fn hs256(claims: &serde_json::Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("sign")
}

/// The server's playback signing key, from its data dir.
pub fn server_signing_key(data_dir: &Path) -> Vec<u8> {
    let hex_secret = std::fs::read_to_string(data_dir.join("playback-signing.key")).expect("signing key");
    hex::decode(hex_secret.trim()).expect("hex key")
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

//! Harness for end-to-end tests: the real `pulse-edge` binary, real ffmpeg
//! publishers and players, talking over loopback.
#![allow(dead_code)]

pub mod admin;
pub mod checks;
pub mod hostile;
pub mod keys;
pub mod playlist;
pub mod s3;
pub mod webhooks;
pub mod whip;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

pub const BIN: &str = env!("CARGO_BIN_EXE_pulse-edge");

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[derive(Debug, Clone, Deserialize)]
pub struct StreamInfo {
    pub id: String,
    pub stream_key: String,
    pub rtmp_url: String,
    pub playback_url: String,
}

impl StreamInfo {
    pub fn publish_url(&self) -> String {
        format!("{}/{}", self.rtmp_url, self.stream_key)
    }
    pub fn token(&self) -> String {
        self.playback_url
            .split_once("token=")
            .map(|(_, t)| t.to_owned())
            .expect("token in playback url")
    }
    /// URL of a file next to the master playlist (`720p/index.m3u8`, `key/0.key`…).
    pub fn url(&self, base: &str, path: &str) -> String {
        format!("{base}/live/{}/{path}", self.id)
    }
}

pub struct Server {
    child: Option<Child>,
    pub http: SocketAddr,
    pub rtmp: SocketAddr,
    pub data_dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    log_path: PathBuf,
}

impl Server {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts the binary on free loopback ports with a fresh data dir; `extra`
    /// adds or overrides PULSE_* variables.
    pub fn start_with(extra: &[(&str, &str)]) -> Self {
        let data_dir = tempfile::tempdir().expect("data dir");
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let rtmp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let mut env: Vec<(String, String)> = vec![
            ("PULSE_DATA_DIR".into(), data_dir.path().display().to_string()),
            ("PULSE_HTTP_LISTEN".into(), http.to_string()),
            ("PULSE_RTMP_LISTEN".into(), rtmp.to_string()),
            (
                "PULSE_PIPELINES_DIR".into(),
                manifest_dir().join("pipelines").display().to_string(),
            ),
            ("PULSE_PLAYBACK_TOKEN_LEEWAY_SECS".into(), "0".into()),
            ("RUST_LOG".into(), "info,tower_http=warn,sqlx=warn".into()),
        ];
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push((k.to_string(), v.to_string()));
        }
        let log_path = data_dir.path().join("server.log");
        let mut server = Self {
            child: None,
            http,
            rtmp,
            data_dir,
            env,
            log_path,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        // Appends: a restarted server's log follows the previous run's.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let child = Command::new(BIN)
            .arg("serve")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("PULSE_PUBLIC_URL")
            .current_dir(self.data_dir.path())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start pulse-edge");
        self.child = Some(child);
        self.wait_ready();
    }

    /// SIGKILL: no shutdown code runs, as in a crash or an OOM kill.
    pub fn kill_9(&mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the binary again on the same ports, data dir and settings.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill the server first");
        self.spawn();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("pulse-edge exited early ({status}):\n{}", self.log());
                }
            }
            if std::net::TcpStream::connect(self.http).is_ok() && std::net::TcpStream::connect(self.rtmp).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("pulse-edge not listening after 30 s:\n{}", self.log());
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.http)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Runs the CLI against this server's data dir and config.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.data_dir.path())
            .output()
            .expect("run pulse-edge cli")
    }

    pub fn create_stream(&self, name: &str, profile: Option<&str>) -> StreamInfo {
        self.stream_create(vec!["stream", "create", "--name", name], profile)
    }

    /// `stream create` in an app (id or name).
    pub fn create_stream_in(&self, app: &str, name: &str, profile: Option<&str>) -> StreamInfo {
        self.stream_create(vec!["stream", "create", "--app", app, "--name", name], profile)
    }

    fn stream_create<'a>(&self, mut args: Vec<&'a str>, profile: Option<&'a str>) -> StreamInfo {
        if let Some(p) = profile {
            args.extend(["--profile", p]);
        }
        let out = self.cli(&args);
        assert!(
            out.status.success(),
            "stream create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("stream create prints one JSON object")
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("pulse-edge did not stop within 10 s of SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            eprintln!("---- pulse-edge log (last lines) ----");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proc {
    pub fn spawn(program: &str, args: &[String]) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let log_path = dir.path().join("out.log");
        let log = std::fs::File::create(&log_path).expect("log");
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        Self {
            child,
            log_path,
            _dir: dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits up to `timeout` for exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a synthetic ffmpeg publisher sends.
#[derive(Debug, Clone)]
pub struct Source {
    pub video: Option<(u32, u32)>,
    pub fps: u32,
    pub audio: bool,
    /// Keyframe interval in frames.
    pub gop: u32,
    pub seconds: Option<u32>,
    pub video_kbps: u32,
    /// ffmpeg audio encoder: "aac" (copied by the server) or e.g. "libmp3lame" (encoded to AAC).
    pub audio_codec: &'static str,
}

impl Source {
    pub fn small() -> Self {
        Self {
            video: Some((640, 360)),
            fps: 30,
            audio: true,
            gop: 60,
            seconds: None,
            video_kbps: 800,
            audio_codec: "aac",
        }
    }
    pub fn hd1080() -> Self {
        Self {
            video: Some((1920, 1080)),
            fps: 30,
            audio: true,
            gop: 60,
            seconds: None,
            video_kbps: 4500,
            audio_codec: "aac",
        }
    }

    pub fn ffmpeg_args(&self, url: &str) -> Vec<String> {
        let mut a: Vec<String> = ["-hide_banner", "-loglevel", "error", "-re"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if let Some((w, h)) = self.video {
            a.extend([
                "-f".into(),
                "lavfi".into(),
                "-i".into(),
                format!("testsrc2=size={w}x{h}:rate={}", self.fps),
            ]);
        }
        if self.audio {
            a.extend(["-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000"].map(String::from));
        }
        if let Some(s) = self.seconds {
            a.extend(["-t".into(), s.to_string()]);
        }
        if self.video.is_some() {
            a.extend(
                [
                    "-c:v",
                    "libx264",
                    "-preset",
                    "ultrafast",
                    "-tune",
                    "zerolatency",
                    "-pix_fmt",
                    "yuv420p",
                ]
                .map(String::from),
            );
            a.extend([
                "-g".into(),
                self.gop.to_string(),
                "-b:v".into(),
                format!("{}k", self.video_kbps),
            ]);
        }
        if self.audio {
            a.extend(["-c:a", self.audio_codec, "-b:a", "96k"].map(String::from));
        }
        a.extend(["-f".into(), "flv".into(), url.to_owned()]);
        a
    }

    pub fn publish(&self, url: &str) -> Proc {
        Proc::spawn("ffmpeg", &self.ffmpeg_args(url))
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client")
}

pub async fn get_text(url: &str) -> (u16, String) {
    let resp = http()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

pub async fn get_bytes(url: &str) -> bytes::Bytes {
    let resp = http()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(resp.status().as_u16(), 200, "GET {url}");
    resp.bytes().await.unwrap_or_else(|e| panic!("GET {url} body: {e}"))
}

/// Polls `url` until it answers 200, for at most `timeout`.
pub async fn wait_for_200(url: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(resp) = http().get(url).send().await {
            if resp.status().as_u16() == 200 {
                return resp.text().await.unwrap_or_default();
            }
        }
        assert!(Instant::now() < deadline, "{url} not 200 within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the master playlist of `stream` is served and every media
/// playlist it names lists at least one segment; returns the master text.
pub async fn wait_until_live(server: &Server, stream: &StreamInfo, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let master = wait_for_200(&stream.playback_url, timeout).await;
    for uri in playlist::media_uris(&master) {
        let url = stream.url(&server.base(), &uri);
        loop {
            let (status, body) = get_text(&url).await;
            if status == 200 && body.contains("#EXTINF") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{url} has no segment within {timeout:?} (last status {status})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    master
}

/// ffmpeg decodes `seconds` of `url` (with all its renditions' decryption);
/// returns (exit ok, stderr). A decoder that hangs counts as a failure.
pub fn ffmpeg_decode(url: &str, seconds: u32, extra_input_args: &[&str]) -> (bool, String) {
    let mut args: Vec<String> = ["-hide_banner", "-nostdin", "-v", "error"].map(String::from).to_vec();
    args.extend(extra_input_args.iter().map(|s| s.to_string()));
    args.extend([
        "-i".into(),
        url.into(),
        "-t".into(),
        seconds.to_string(),
        "-f".into(),
        "null".into(),
        "-".into(),
    ]);
    let mut proc = Proc::spawn("ffmpeg", &args);
    match proc.wait_timeout(Duration::from_secs(u64::from(seconds) + 30)) {
        Some(status) => (status.success(), proc.log()),
        None => (
            false,
            format!(
                "ffmpeg did not finish decoding {seconds} s within {} s\n{}",
                seconds + 30,
                proc.log()
            ),
        ),
    }
}

/// Plays `url` with hls.js in headless Chromium (tests/player/play.mjs) for
/// `seconds`; the harness's JSON report.
pub fn hlsjs_report(url: &str, seconds: u32, low_latency: bool) -> serde_json::Value {
    let script = manifest_dir().join("tests/player/play.mjs");
    let out = Command::new("node")
        .arg(&script)
        .arg(url)
        .args([
            "--seconds",
            &seconds.to_string(),
            "--low-latency",
            &low_latency.to_string(),
        ])
        .output()
        .expect("run node player");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "player harness failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

pub fn which(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

pub fn read_dir_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

//! A real webhook receiver for tests: tests/support/webhook_receiver.py,
//! which verifies signatures with the `standardwebhooks` package from PyPI.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{manifest_dir, Proc, Server};

pub struct Receiver {
    proc: Proc,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

#[derive(Debug, Default, Clone)]
pub struct ReceiverOptions {
    /// Fixed port (to come back on after a pause); 0 picks one.
    pub port: u16,
    pub secrets: Vec<String>,
    /// Answer `status` for this long after start (negative: for ever).
    pub fail_for_secs: f64,
    pub status: Option<u16>,
    pub retry_after: Option<String>,
    pub delay_secs: f64,
}

fn python() -> PathBuf {
    std::env::var_os("PULSE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("target/pyenv/bin/python"))
}

impl Receiver {
    pub fn start(options: ReceiverOptions) -> Self {
        let python = python();
        assert!(
            python.exists(),
            "{} not found: run `make test-deps` (it installs standardwebhooks into target/pyenv)",
            python.display()
        );
        let dir = tempfile::tempdir().expect("tmp");
        let port_file = dir.path().join("port");
        let log = dir.path().join("received.jsonl");
        let mut args = vec![
            manifest_dir()
                .join("tests/support/webhook_receiver.py")
                .display()
                .to_string(),
            "--port".into(),
            options.port.to_string(),
            "--port-file".into(),
            port_file.display().to_string(),
            "--log".into(),
            log.display().to_string(),
            "--fail-for".into(),
            options.fail_for_secs.to_string(),
            "--delay".into(),
            options.delay_secs.to_string(),
        ];
        for secret in &options.secrets {
            args.extend(["--secret".into(), secret.clone()]);
        }
        if let Some(status) = options.status {
            args.extend(["--status".into(), status.to_string()]);
        }
        if let Some(after) = &options.retry_after {
            args.extend(["--retry-after".into(), after.clone()]);
        }
        let mut proc = Proc::spawn(&python.display().to_string(), &args);
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|p| p.trim().parse().ok())
            {
                break port;
            }
            assert!(proc.is_running(), "webhook receiver exited:\n{}", proc.log());
            assert!(
                Instant::now() < deadline,
                "webhook receiver did not start:\n{}",
                proc.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Self {
            proc,
            port,
            log,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Bodies of the requests answered 2xx, in arrival order.
    pub fn delivered(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["answered"].as_u64().is_some_and(|s| (200..300).contains(&s)))
            .map(|r| r["body"].clone())
            .collect()
    }

    /// Waits until `done` holds for the delivered bodies.
    pub fn wait_for(&self, timeout: Duration, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let delivered = self.delivered();
            if done(&delivered) {
                return delivered;
            }
            assert!(
                Instant::now() < deadline,
                "receiver: {what} not seen within {timeout:?}; got {:#?}",
                self.requests()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }
}

/// The server settings webhook tests run with: loopback allowed, a fast
/// retry schedule, a short reconnect window.
pub fn webhook_env(schedule: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("PULSE_WEBHOOKS_ALLOW_NETWORKS", "127.0.0.0/8"),
        ("PULSE_WEBHOOKS_RETRY_SCHEDULE_SECS", schedule),
        ("PULSE_RECONNECT_WINDOW_SECS", "2"),
    ]
}

/// A `whsec_` secret of our own, so that the receiver can start before the
/// endpoint exists.
pub fn test_secret() -> String {
    use base64::Engine;
    let bytes: [u8; 24] = rand::random();
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

impl Server {
    /// The admin SSE feed (`/api/v1/events/stream`), subscribed.
    pub async fn event_feed(&self, admin: &str) -> reqwest::Response {
        let feed = super::http()
            .get(format!("{}/api/v1/events/stream", self.base()))
            .bearer_auth(admin)
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .expect("feed");
        assert_eq!(feed.status(), 200);
        feed
    }

    /// Registers an endpoint on the default app with `secret`; returns its id.
    pub async fn add_webhook(&self, admin: &str, url: &str, secret: &str, types: &[&str]) -> String {
        let (status, body) = self
            .api(
                admin,
                "POST",
                "/apps/app_default/webhooks",
                Some(serde_json::json!({ "url": url, "secret": secret, "event_types": types })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().expect("id").to_owned()
    }
}

/// The stream's events in arrival order, as (type, sequence).
pub fn stream_story(delivered: &[Value], stream_id: &str) -> Vec<(String, i64)> {
    delivered
        .iter()
        .filter(|e| e["stream_id"] == stream_id)
        .map(|e| {
            (
                e["type"].as_str().unwrap_or("").to_owned(),
                e["sequence"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

/// Reads SSE frames until `count` of them pass `keep(event name, data)`:
/// (data, arrival in ms since the epoch).
pub async fn read_sse(
    mut response: reqwest::Response,
    count: usize,
    keep: impl Fn(&str, &Value) -> bool,
) -> Vec<(Value, i64)> {
    let mut buffer = String::new();
    let mut frames = Vec::new();
    while frames.len() < count {
        let Ok(Some(chunk)) = response.chunk().await else {
            break;
        };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let event = frame
                .lines()
                .find_map(|l| l.strip_prefix("event:"))
                .map(str::trim)
                .unwrap_or("message")
                .to_owned();
            let data: String = frame
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            if let Ok(body) = serde_json::from_str::<Value>(&data) {
                if keep(&event, &body) {
                    frames.push((body, now_ms()));
                }
            }
        }
    }
    frames
}

/// `stream.*` events from the SSE feed.
pub async fn read_feed(response: reqwest::Response, count: usize) -> Vec<(Value, i64)> {
    read_sse(response, count, |event, _| event.starts_with("stream.")).await
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

//! The pull loop: connect, publish through the gate while the camera
//! sends, and reconnect with backoff when it drops. Each drop ends the
//! publish (`stream.disconnected`); each reconnect is a new publish that
//! continues the stream (`stream.connected`, a discontinuity in HLS).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use retina::client::SessionGroup;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::session::{self, SessionError};
use crate::ingest::{next_connection_id, PublishGate, PublishRequest};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PullTransport {
    /// RTP interleaved on the RTSP connection: works through NAT and firewalls.
    #[default]
    Tcp,
    /// RTP over UDP (LAN cameras; packets lost are lost).
    Udp,
}

#[derive(Debug, Clone)]
pub struct PullSettings {
    /// With credentials, if any (kept out of logs).
    pub url: String,
    pub transport: PullTransport,
    pub stream_key: String,
    pub app: String,
    /// Backoff after a failure: doubles from `retry_min` up to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// A camera that sends nothing for this long is dropped and redialled.
    pub silence_timeout: Duration,
}

impl PullSettings {
    pub fn new(url: String, transport: PullTransport, stream_key: String) -> Self {
        Self {
            url,
            transport,
            stream_key,
            app: "live".into(),
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
            silence_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PullState {
    Connecting,
    Live,
    /// Waiting before the next attempt (see `last_error`).
    Retrying,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullStatus {
    pub state: PullState,
    pub last_error: Option<String>,
    /// Connection attempts since the puller started.
    pub attempts: u32,
    /// Successful connections (each one a publish).
    pub connections: u32,
    /// When the current state began.
    pub since: Instant,
}

/// A running puller. Dropping it stops the pull.
pub struct PullHandle {
    stop: CancellationToken,
    status: watch::Receiver<PullStatus>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl PullHandle {
    pub fn status(&self) -> PullStatus {
        self.status.borrow().clone()
    }

    pub fn watch(&self) -> watch::Receiver<PullStatus> {
        self.status.clone()
    }

    /// Stops and waits until the publish has ended.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for PullHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts pulling. `label` names the source in logs (never the URL's credentials).
pub fn spawn_pull(label: &str, settings: PullSettings, gate: Arc<dyn PublishGate>) -> PullHandle {
    let stop = CancellationToken::new();
    let (tx, rx) = watch::channel(PullStatus {
        state: PullState::Connecting,
        last_error: None,
        attempts: 0,
        connections: 0,
        since: Instant::now(),
    });
    let span = tracing::info_span!("rtsp", source = %label, url = %super::redact(&settings.url));
    let task = tokio::spawn(run(settings, gate, tx, stop.clone()).instrument(span));
    PullHandle {
        stop,
        status: rx,
        task: Some(task),
    }
}

enum Outcome {
    Stopped,
    Kicked,
    Failed(String, bool),
}

async fn run(
    settings: PullSettings,
    gate: Arc<dyn PublishGate>,
    status: watch::Sender<PullStatus>,
    stop: CancellationToken,
) {
    let set = |state: PullState, error: Option<String>, attempt: bool, connected: bool| {
        status.send_modify(|s| {
            if s.state != state {
                s.since = Instant::now();
            }
            s.state = state;
            if error.is_some() || state == PullState::Live {
                s.last_error = error.clone();
            }
            s.attempts += u32::from(attempt);
            s.connections += u32::from(connected);
        });
    };
    let (url, credentials) = match super::split_credentials(&settings.url) {
        Ok(parts) => parts,
        Err(e) => {
            tracing::warn!(error = %e, "RTSP source URL is not usable");
            set(PullState::Stopped, Some(e), false, false);
            return;
        }
    };
    // Lets retina wait out a camera's stale session after a reconnect.
    let group = Arc::new(SessionGroup::default());
    let mut backoff = settings.retry_min;
    loop {
        set(PullState::Connecting, None, true, false);
        let started = Instant::now();
        let outcome = tokio::select! {
            biased;
            _ = stop.cancelled() => Outcome::Stopped,
            outcome = pull_once(&settings, &url, credentials.clone(), group.clone(), &gate, &stop, || set(PullState::Live, None, false, true)) => outcome,
        };
        match outcome {
            Outcome::Stopped => {
                set(PullState::Stopped, None, false, false);
                return;
            }
            Outcome::Kicked => {
                // Another publisher took the stream (or an operator kicked it):
                // pulling again would take it straight back.
                tracing::warn!("RTSP pull stopped: the stream was taken over or kicked");
                set(
                    PullState::Stopped,
                    Some("taken over or kicked; start the source again".into()),
                    false,
                    false,
                );
                return;
            }
            Outcome::Failed(error, unauthorized) => {
                // A connection that lasted is a camera restart, not a failing camera.
                if started.elapsed() >= Duration::from_secs(30) {
                    backoff = settings.retry_min;
                }
                // Wrong credentials will not fix themselves quickly.
                let wait = if unauthorized {
                    backoff.max(Duration::from_secs(10))
                } else {
                    backoff
                };
                tracing::warn!(%error, retry_in_ms = wait.as_millis() as u64, "RTSP source failed; retrying");
                set(PullState::Retrying, Some(error), false, false);
                tokio::select! {
                    _ = stop.cancelled() => {
                        set(PullState::Stopped, None, false, false);
                        return;
                    }
                    _ = tokio::time::sleep(wait) => {}
                }
                backoff = (wait * 2).min(settings.retry_max);
            }
        }
    }
}

async fn pull_once(
    settings: &PullSettings,
    url: &url::Url,
    credentials: Option<(String, String)>,
    group: Arc<SessionGroup>,
    gate: &Arc<dyn PublishGate>,
    stop: &CancellationToken,
    on_live: impl FnOnce(),
) -> Outcome {
    // A camera that accepts the connection and then says nothing must not hold the loop.
    let connecting = session::connect(url, credentials, settings.transport, group);
    let mut playing = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(playing)) => playing,
        Ok(Err(e)) => return Outcome::Failed(e.to_string(), matches!(e, SessionError::Unauthorized(_))),
        Err(_) => {
            return Outcome::Failed(
                format!("no answer to DESCRIBE/SETUP/PLAY within {CONNECT_TIMEOUT:?}"),
                false,
            )
        }
    };
    let client_addr = camera_addr(url).await;
    let request = PublishRequest {
        protocol: "rtsp",
        app: settings.app.clone(),
        stream_key: settings.stream_key.clone(),
        client_addr,
        connection_id: next_connection_id(),
    };
    let publish = match gate.begin(request).await {
        Ok(publish) => publish,
        Err(refused) => return Outcome::Failed(format!("publish refused: {}", refused.description), false),
    };
    tracing::info!(stream_id = %publish.stream_id, "RTSP source connected");
    on_live();
    loop {
        let packets = tokio::select! {
            biased;
            _ = stop.cancelled() => return Outcome::Stopped,
            _ = publish.kicked.cancelled() => return Outcome::Kicked,
            next = playing.next(settings.silence_timeout) => next,
        };
        let packets = match packets {
            Ok(packets) => packets,
            Err(e) => return Outcome::Failed(e.to_string(), false),
        };
        for packet in packets {
            publish.counters.add_bytes(payload_len(&packet));
            publish.counters.on_packet(&packet);
            tokio::select! {
                biased;
                _ = stop.cancelled() => return Outcome::Stopped,
                _ = publish.kicked.cancelled() => return Outcome::Kicked,
                sent = publish.media.send(packet) => if sent.is_err() {
                    return Outcome::Failed("the stream stopped taking media".into(), false);
                },
            }
        }
    }
}

/// Payload bytes of a frame, for the ingest byte counter (RTP/RTSP overhead not counted).
fn payload_len(packet: &crate::ingest::MediaPacket) -> usize {
    use crate::ingest::MediaPacket;
    match packet {
        MediaPacket::Video(f) => f.data.len(),
        MediaPacket::Audio(f) => f.data.len(),
        _ => 0,
    }
}

/// The camera's address, for the publish's `client_addr` (events, logs).
async fn camera_addr(url: &url::Url) -> SocketAddr {
    let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']).to_owned();
    let port = url.port().unwrap_or(554);
    tokio::net::lookup_host((host.as_str(), port))
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], port)))
}

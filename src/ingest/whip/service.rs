//! WHIP sessions: admit a publish through the `PublishGate`, answer its
//! offer with a webrtcbin peer, and supervise it until it ends (DELETE,
//! takeover, ICE failure, or silence).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::error::WhipError;
use super::peer::{PacketSink, Peer, PeerEvent, PeerSettings};
use super::sdp::{self, OfferSummary};
use crate::ingest::{next_connection_id, PublishGate, PublishRequest, PublishSession};

#[derive(Debug, Clone)]
pub struct WhipSettings {
    pub peer: PeerSettings,
    /// Added as a host candidate beside each local one (1:1 NAT).
    pub public_ip: Option<IpAddr>,
    pub max_sessions: usize,
    /// Sessions (running or being set up) from one client address (IPv6:
    /// one /64, what a single host usually gets).
    pub max_sessions_per_ip: usize,
    /// No media for this long (after ICE connected, or since the answer if
    /// it never did) ends the session.
    pub idle_timeout: Duration,
    /// `Link` header values for the ICE servers the client may use.
    pub ice_server_links: Vec<String>,
    /// The app name given to the auth callback (the RTMP URL's is `live`).
    pub app: String,
}

impl Default for WhipSettings {
    fn default() -> Self {
        Self {
            peer: PeerSettings {
                jitter_latency_ms: 200,
                gather_timeout: Duration::from_secs(5),
                ..PeerSettings::default()
            },
            public_ip: None,
            max_sessions: 64,
            max_sessions_per_ip: 4,
            idle_timeout: Duration::from_secs(15),
            ice_server_links: Vec::new(),
            app: "live".into(),
        }
    }
}

/// What a successful POST returns.
#[derive(Debug, Clone)]
pub struct Created {
    pub session_id: String,
    pub etag: String,
    pub answer: String,
}

struct Session {
    client: IpAddr,
    etag: String,
    offer: OfferSummary,
    peer: Arc<Peer>,
    end: CancellationToken,
}

/// Why a session ended, for the log.
#[derive(Debug, thiserror::Error)]
enum EndReason {
    #[error("the publisher deleted the session")]
    Deleted,
    #[error("kicked or taken over")]
    Kicked,
    #[error("the stream stopped taking media")]
    MediaClosed,
    #[error("WebRTC failed: {0}")]
    Failed(String),
    #[error("no media for {0:?}")]
    Idle(Duration),
    #[error("server shutting down")]
    Shutdown,
}

pub struct WhipService {
    gate: Arc<dyn PublishGate>,
    settings: WhipSettings,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Counted from the POST, before negotiation, so a burst cannot
    /// overshoot: slots being set up, per client address.
    reserved: Mutex<HashMap<IpAddr, usize>>,
    shutdown: CancellationToken,
}

impl WhipService {
    pub fn new(gate: Arc<dyn PublishGate>, settings: WhipSettings, shutdown: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            gate,
            settings,
            sessions: Mutex::new(HashMap::new()),
            reserved: Mutex::new(HashMap::new()),
            shutdown,
        })
    }

    pub fn ice_server_links(&self) -> &[String] {
        &self.settings.ice_server_links
    }

    /// POST: the whole publish handshake. Cheap refusals come first, and
    /// nobody without a valid key reaches the SDP parser; the offer is
    /// checked before `begin`, so an offer we would refuse never takes over
    /// a live stream.
    pub async fn publish(
        self: &Arc<Self>,
        stream_key: &str,
        client: SocketAddr,
        offer: &str,
    ) -> Result<Created, WhipError> {
        let _slot = self.reserve(client.ip())?;
        let connection_id = next_connection_id();
        let request = PublishRequest {
            protocol: "whip",
            app: self.settings.app.clone(),
            stream_key: stream_key.to_owned(),
            client_addr: client,
            connection_id,
        };
        self.gate.check(request.clone()).await.map_err(WhipError::Refused)?;
        let (message, summary) = sdp::check_offer(offer)?;
        let session = self.gate.begin(request).await.map_err(WhipError::Refused)?;
        let session_id = uuid::Uuid::new_v4().simple().to_string();
        let span = tracing::info_span!("whip", conn = connection_id, peer = %client, session = %session_id, stream_id = %session.stream_id);
        let sink = PacketSink::new(session.media.clone(), session.counters.clone());
        let (events_tx, events) = mpsc::unbounded_channel();
        let name = format!("whip-{session_id}");
        let peer_settings = self.settings.peer.clone();
        let negotiation_sink = sink.clone();
        span.in_scope(|| {
            tracing::info!(
                video = summary.video,
                audio = summary.audio,
                "WHIP offer accepted; negotiating"
            )
        });
        // webrtcbin's promises block: off the async workers.
        let negotiated = tokio::task::spawn_blocking(move || {
            Peer::answer(&name, message, &peer_settings, negotiation_sink, events_tx)
        })
        .await
        .map_err(|e| WhipError::Negotiation(e.to_string()))?;
        let (peer, mut answer) = match negotiated {
            Ok(done) => done,
            Err(why) => {
                span.in_scope(|| tracing::warn!(%why, "WHIP negotiation failed"));
                return Err(WhipError::Negotiation(why));
            }
        };
        if let Some(public) = self.settings.public_ip {
            answer = sdp::add_public_candidates(&answer, public);
        }
        let peer = Arc::new(peer);
        let etag = format!("\"{}\"", uuid::Uuid::new_v4().simple());
        let entry = Arc::new(Session {
            client: crate::slots::client_key(client.ip()),
            etag: etag.clone(),
            offer: summary,
            peer,
            end: CancellationToken::new(),
        });
        self.sessions.lock().insert(session_id.clone(), entry.clone());
        // The publish session (and the kick token) live as long as the supervisor.
        let service = self.clone();
        let id = session_id.clone();
        tokio::spawn(
            async move {
                let reason = service
                    .supervise(&entry, &session, events)
                    .await;
                tracing::info!(%reason, bytes_in = session.counters.bytes.load(std::sync::atomic::Ordering::Relaxed), "WHIP session ended");
                service.sessions.lock().remove(&id);
                let closing = entry.peer.clone();
                let _ = tokio::task::spawn_blocking(move || closing.close()).await;
                drop(session);
            }
            .instrument(span),
        );
        Ok(Created {
            session_id,
            etag,
            answer,
        })
    }

    /// PATCH: trickled candidates from the client.
    pub fn trickle(&self, session_id: &str, if_match: Option<&str>, fragment: &str) -> Result<(), WhipError> {
        let session = self.session(session_id)?;
        if let Some(tag) = if_match {
            if tag.trim() != "*" && tag.trim() != session.etag {
                return Err(WhipError::EtagMismatch { got: tag.to_owned() });
            }
        }
        let fragment = sdp::parse_fragment(fragment, &session.offer.mids)?;
        if fragment.ice_ufrag.is_some() && fragment.ice_ufrag != session.offer.ice_ufrag {
            return Err(WhipError::IceRestart);
        }
        for candidate in &fragment.candidates {
            session.peer.add_remote_candidate(candidate.mline, &candidate.candidate);
        }
        Ok(())
    }

    /// DELETE: the publisher is done.
    pub fn delete(&self, session_id: &str) -> Result<(), WhipError> {
        let session = self.sessions.lock().remove(session_id);
        match session {
            Some(session) => {
                session.end.cancel();
                Ok(())
            }
            None => Err(WhipError::UnknownSession(session_id.to_owned())),
        }
    }

    fn session(&self, session_id: &str) -> Result<Arc<Session>, WhipError> {
        self.sessions
            .lock()
            .get(session_id)
            .cloned()
            .ok_or_else(|| WhipError::UnknownSession(session_id.to_owned()))
    }

    fn reserve(self: &Arc<Self>, client: IpAddr) -> Result<Reservation, WhipError> {
        let client = crate::slots::client_key(client);
        let mut reserved = self.reserved.lock();
        let sessions = self.sessions.lock();
        let running = sessions.len();
        if running + reserved.values().sum::<usize>() >= self.settings.max_sessions {
            return Err(WhipError::AtCapacity(running));
        }
        let from_client =
            sessions.values().filter(|s| s.client == client).count() + reserved.get(&client).copied().unwrap_or(0);
        if from_client >= self.settings.max_sessions_per_ip {
            return Err(WhipError::TooManyFromAddress(self.settings.max_sessions_per_ip));
        }
        *reserved.entry(client).or_default() += 1;
        Ok(Reservation {
            service: self.clone(),
            client,
        })
    }

    async fn supervise(
        &self,
        session: &Session,
        publish: &PublishSession,
        mut events: mpsc::UnboundedReceiver<PeerEvent>,
    ) -> EndReason {
        let sink = &session.peer.sink;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_pli: Option<Instant> = None;
        loop {
            tokio::select! {
                biased;
                _ = session.end.cancelled() => return EndReason::Deleted,
                _ = publish.kicked.cancelled() => return EndReason::Kicked,
                _ = self.shutdown.cancelled() => return EndReason::Shutdown,
                _ = publish.media.closed() => return EndReason::MediaClosed,
                _ = publish.keyframe_wanted.notified() => {
                    // A decoder that lost its way reports every broken frame: one PLI a second.
                    if last_pli.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        tracing::debug!("the ladder needs a keyframe: PLI");
                        sink.request_keyframe();
                        last_pli = Some(Instant::now());
                    }
                }
                event = events.recv() => match event {
                    Some(PeerEvent::Connected) => tracing::info!("WebRTC connected"),
                    Some(PeerEvent::Failed(why)) => return EndReason::Failed(why),
                    None => return EndReason::Failed("peer gone".into()),
                },
                _ = tick.tick() => {
                    let idle = sink.idle_for();
                    if idle >= self.settings.idle_timeout {
                        return EndReason::Idle(idle);
                    }
                    // Until the first keyframe, keep asking (a PLI can be lost).
                    if sink.has_video_track() && !sink.keyframe_seen() {
                        sink.request_keyframe();
                    }
                }
            }
        }
    }
}

/// A capacity slot held from POST until the session is listed (or refused).
struct Reservation {
    service: Arc<WhipService>,
    client: IpAddr,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut reserved = self.service.reserved.lock();
        if let Some(count) = reserved.get_mut(&self.client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                reserved.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::future::BoxFuture;

    use super::*;
    use crate::ingest::{PublishRejection, RejectCode};

    /// Knows one key; counts what it was asked.
    #[derive(Default)]
    struct Gate {
        checks: AtomicUsize,
        begins: AtomicUsize,
    }

    impl PublishGate for Arc<Gate> {
        fn begin(&self, _request: PublishRequest) -> BoxFuture<'static, Result<PublishSession, PublishRejection>> {
            self.begins.fetch_add(1, Ordering::SeqCst);
            Box::pin(async {
                Err(PublishRejection {
                    code: RejectCode::Rejected,
                    description: "not in this test".into(),
                })
            })
        }

        fn check(&self, request: PublishRequest) -> BoxFuture<'static, Result<(), PublishRejection>> {
            self.checks.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                match request.stream_key.as_str() {
                    "good" => Ok(()),
                    _ => Err(PublishRejection {
                        code: RejectCode::BadName,
                        description: "unknown stream key".into(),
                    }),
                }
            })
        }
    }

    fn service(settings: WhipSettings) -> (Arc<Gate>, Arc<WhipService>) {
        let gate = Arc::new(Gate::default());
        let service = WhipService::new(Arc::new(gate.clone()), settings, CancellationToken::new());
        (gate, service)
    }

    fn client(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().expect("ip"), 5000)
    }

    #[tokio::test]
    async fn the_key_is_checked_before_the_offer_is_parsed() {
        let (gate, service) = service(WhipSettings::default());
        let refused = service
            .publish("guess", client("192.0.2.1"), "not sdp at all")
            .await
            .expect_err("bad key");
        assert_eq!(refused.status(), 401, "{refused}");
        assert_eq!(gate.begins.load(Ordering::SeqCst), 0);
        // A good key with a broken offer: 400, and no takeover (no begin).
        let broken = service
            .publish("good", client("192.0.2.1"), "not sdp at all")
            .await
            .expect_err("bad offer");
        assert_eq!(broken.status(), 400, "{broken}");
        assert_eq!(gate.checks.load(Ordering::SeqCst), 2);
        assert_eq!(gate.begins.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn sessions_are_capped_per_client_address() {
        let (_gate, service) = service(WhipSettings {
            max_sessions_per_ip: 2,
            ..WhipSettings::default()
        });
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let first = service.reserve(ip("192.0.2.1")).expect("first");
        let _second = service
            .reserve(ip("::ffff:192.0.2.1"))
            .expect("second, same host written as IPv6");
        let refused = service.reserve(ip("192.0.2.1")).err().expect("third");
        assert_eq!(refused.status(), 503);
        assert!(matches!(refused, WhipError::TooManyFromAddress(2)), "{refused}");
        let _other = service.reserve(ip("192.0.2.2")).expect("another address");
        // One IPv6 /64 is one client.
        let _v6 = service.reserve(ip("2001:db8:1:2::1")).expect("v6");
        let _v6b = service.reserve(ip("2001:db8:1:2::ffff")).expect("v6, same /64");
        assert!(service.reserve(ip("2001:db8:1:2:abcd::1")).is_err());
        assert!(service.reserve(ip("2001:db8:1:3::1")).is_ok());
        drop(first);
        service.reserve(ip("192.0.2.1")).expect("a slot freed");
    }

    #[tokio::test]
    async fn the_per_address_cap_answers_503_with_retry_after() {
        use axum::response::IntoResponse;
        let response = WhipError::TooManyFromAddress(4).into_response();
        assert_eq!(response.status().as_u16(), 503);
        assert_eq!(response.headers()["retry-after"], "10");
    }
}

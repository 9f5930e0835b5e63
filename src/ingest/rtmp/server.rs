use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, field, info, info_span, warn, Instrument};

use super::connection::{Connection, Shared};
use super::error::RtmpError;
use super::settings::RtmpSettings;
use crate::ingest::PublishGate;
use crate::logging::LogLimiter;
use crate::slots::{ClientSlots, Refusal};

/// How long `serve` waits for connection tasks after shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The RTMP listener. Each accepted connection runs in its own task.
pub struct RtmpServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    caps: ClientSlots,
}

impl RtmpServer {
    pub async fn bind(settings: RtmpSettings, gate: Arc<dyn PublishGate>) -> Result<RtmpServer, RtmpError> {
        let addr = settings.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| RtmpError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| RtmpError::Bind { addr, source })?;
        Ok(RtmpServer {
            listener,
            local_addr,
            caps: ClientSlots::new(settings.max_connections, settings.max_connections_per_ip),
            shared: Arc::new(Shared::new(settings, gate)),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Accepts until `shutdown` is cancelled, then closes every connection
    /// (their publish sessions end) and waits briefly for them.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), RtmpError> {
        info!(addr = %self.local_addr, "RTMP ingest listening");
        let tasks = TaskTracker::new();
        let mut accept_log = LogLimiter::default();
        let mut refused_log = LogLimiter::default();
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            let (socket, peer) = match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    if let Some(suppressed) = accept_log.allow() {
                        warn!(error = %err, addr = %self.local_addr, suppressed, "RTMP accept failed");
                    }
                    // Usually fd exhaustion: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let slot = match self.caps.try_acquire(peer.ip()) {
                Ok(slot) => slot,
                Err(refusal) => {
                    // Dropped before the handshake: costs us one accept.
                    drop(socket);
                    log_refused(&mut refused_log, peer, refusal, &self.caps);
                    continue;
                }
            };
            let _ = socket.set_nodelay(true);
            let id = crate::ingest::next_connection_id();
            let span = info_span!("rtmp", conn = id, %peer, app = field::Empty, key = field::Empty);
            let connection = Connection::new(
                id,
                peer,
                socket,
                self.shared.clone(),
                shutdown.child_token(),
                span.clone(),
            );
            tasks.spawn(
                async move {
                    connection.run().await;
                    drop(slot);
                }
                .instrument(span),
            );
        }
        tasks.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, tasks.wait()).await.is_err() {
            warn!(remaining = tasks.len(), "RTMP connections still closing after shutdown");
        }
        info!(addr = %self.local_addr, "RTMP ingest stopped");
        Ok(())
    }
}

fn log_refused(limiter: &mut LogLimiter, peer: SocketAddr, refusal: Refusal, caps: &ClientSlots) {
    let (which, max) = match refusal {
        Refusal::Total => ("rtmp.max_connections", caps.max_total()),
        Refusal::PerClient => ("rtmp.max_connections_per_ip", caps.max_per_client()),
    };
    match limiter.allow() {
        Some(suppressed) => warn!(%peer, cap = which, max, suppressed, "RTMP connection refused: too many connections"),
        None => debug!(%peer, cap = which, max, "RTMP connection refused: too many connections"),
    }
}

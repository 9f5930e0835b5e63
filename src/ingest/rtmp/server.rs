use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{field, info, info_span, warn, Instrument};

use super::connection::Connection;
use super::error::RtmpError;
use super::settings::RtmpSettings;
use crate::ingest::PublishGate;

/// How long `serve` waits for connection tasks after shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The RTMP listener. Each accepted connection runs in its own task.
pub struct RtmpServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    settings: Arc<RtmpSettings>,
    gate: Arc<dyn PublishGate>,
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
            settings: Arc::new(settings),
            gate,
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
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            let (socket, peer) = match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Usually fd exhaustion: back off instead of spinning.
                    warn!(error = %err, addr = %self.local_addr, "RTMP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
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
                self.settings.clone(),
                self.gate.clone(),
                shutdown.child_token(),
                span.clone(),
            );
            tasks.spawn(connection.run().instrument(span));
        }
        tasks.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, tasks.wait()).await.is_err() {
            warn!(remaining = tasks.len(), "RTMP connections still closing after shutdown");
        }
        info!(addr = %self.local_addr, "RTMP ingest stopped");
        Ok(())
    }
}

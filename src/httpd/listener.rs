//! The HTTP accept loop: hyper's HTTP/1 server with its header-read timer,
//! connection caps in total and per client address, accept failures and
//! refusals logged at most once per interval, and graceful shutdown.
//!
//! `axum::serve` has no timeouts and no caps: 20,400 idle sockets used up
//! the process's file descriptors, and then nothing (RTMP included) could
//! accept. Here a socket that does not send a complete request head within
//! `header_read_timeout` of being ready for one is closed (hyper's timer
//! starts at accept and again at the end of every response, so it is also
//! the keep-alive idle timeout), and a socket over a cap is closed at once.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::logging::LogLimiter;
use crate::slots::{ClientSlots, Refusal, Slot};

/// After an accept failure that is not about one connection (no file
/// descriptor left, no memory), the loop waits this long before the next
/// accept rather than spinning on the same error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct ListenerSettings {
    /// `http.header_read_timeout_secs`.
    pub header_read_timeout: Duration,
    /// `http.max_request_head_bytes`: hyper's read buffer, so the largest
    /// request head (request line and headers) a client may send.
    pub max_head_bytes: usize,
    /// `http.max_connections`.
    pub max_connections: usize,
    /// `http.max_connections_per_ip`.
    pub max_connections_per_ip: usize,
}

/// The refusals and failures of one listener, each kind logged at most once
/// per interval with the number suppressed in between.
#[derive(Default)]
struct AcceptLog {
    failed: LogLimiter,
    full: LogLimiter,
    client_full: LogLimiter,
}

impl AcceptLog {
    fn failed(&mut self, error: &io::Error) {
        if let Some(suppressed) = self.failed.allow() {
            tracing::warn!(%error, suppressed, "HTTP accept failed; backing off");
        }
    }

    fn refused(&mut self, refusal: Refusal, client: IpAddr, slots: &ClientSlots) {
        match refusal {
            Refusal::Total => {
                if let Some(suppressed) = self.full.allow() {
                    tracing::warn!(
                        max = slots.max_total(),
                        suppressed,
                        "HTTP connection closed at accept: http.max_connections reached"
                    );
                }
            }
            Refusal::PerClient => {
                if let Some(suppressed) = self.client_full.allow() {
                    tracing::warn!(
                        %client,
                        max = slots.max_per_client(),
                        suppressed,
                        "HTTP connection closed at accept: http.max_connections_per_ip reached"
                    );
                }
            }
        }
    }
}

/// Errors about the one connection being accepted (it was reset before we
/// took it): the next accept may well succeed at once.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// Serves `app` on `listener` until `shutdown`; then stops accepting, lets
/// every connection finish its request in flight (idle ones close at once)
/// and returns when they are all closed. Handlers see the client address
/// as `ConnectInfo<SocketAddr>`, as with `into_make_service_with_connect_info`.
pub async fn serve(listener: TcpListener, app: Router, settings: ListenerSettings, shutdown: CancellationToken) {
    let slots = ClientSlots::new(settings.max_connections, settings.max_connections_per_ip);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(settings.max_head_bytes)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let mut log = AcceptLog::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                log.failed(&e);
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    () = shutdown.cancelled() => break,
                }
            }
        };
        match slots.try_acquire(peer.ip()) {
            Ok(slot) => spawn_connection(&builder, &graceful, &app, stream, peer, slot),
            // Dropping the stream closes it: the cap holds the descriptor
            // for no longer than this.
            Err(refusal) => log.refused(refusal, peer.ip(), &slots),
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

fn spawn_connection(
    builder: &hyper::server::conn::http1::Builder,
    graceful: &GracefulShutdown,
    app: &Router,
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
) {
    let service = app.clone().map_request(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request
    });
    let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    let connection = graceful.watch(connection);
    tokio::spawn(async move {
        // Timeouts and clients going away end here; nothing to warn about.
        if let Err(e) = connection.await {
            tracing::debug!(client = %peer, error = %e, "HTTP connection ended with an error");
        }
        drop(slot);
    });
}

/// Raises the soft open-file limit to the hard one (the soft default, 1024
/// on many systems, is far below what a public listener needs; Go's runtime
/// does the same), then warns when `max_connections` (the listeners' caps
/// together) would take more than 80 % of it: past that, WHIP, the store
/// and the media files would be the ones to find no descriptor left.
pub fn check_open_file_limit(max_connections: usize) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let mut soft = limit.current;
    if let (Some(current), Some(maximum)) = (limit.current, limit.maximum) {
        if current < maximum {
            let raised = Rlimit {
                current: Some(maximum),
                maximum: Some(maximum),
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => soft = Some(maximum),
                Err(e) => tracing::debug!(error = %e, "cannot raise the open-file limit"),
            }
        }
    }
    if let Some(soft) = soft.filter(|&soft| too_close_to(max_connections, soft)) {
        tracing::warn!(
            max_connections,
            open_file_limit = soft,
            "http.max_connections + rtmp.max_connections is above 80% of the open-file limit; lower them or raise the limit (ulimit -n, LimitNOFILE=)"
        );
    }
}

fn too_close_to(max_connections: usize, open_file_limit: u64) -> bool {
    u64::try_from(max_connections).unwrap_or(u64::MAX).saturating_mul(5) > open_file_limit.saturating_mul(4)
}

#[cfg(test)]
#[path = "listener_tests.rs"]
mod tests;

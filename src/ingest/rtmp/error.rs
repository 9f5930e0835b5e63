use std::net::SocketAddr;

use super::amf0::AmfError;
use super::chunk::ChunkError;
use super::flv::FlvError;
use super::rml::{HandshakeError, OutboundError};

/// Errors of the RTMP listener as a whole.
#[derive(Debug, thiserror::Error)]
pub enum RtmpError {
    #[error("cannot listen for RTMP on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("RTMP listener on {addr} failed: {source}")]
    Listener {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Why one connection ended. Logged by the connection task; never escapes it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectionError {
    #[error("handshake not finished within {0:?}")]
    HandshakeTimeout(std::time::Duration),
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("peer closed the connection")]
    PeerClosed,
    #[error("no data for {0:?}")]
    Idle(std::time::Duration),
    #[error("no publish within {0:?} of connecting")]
    PublishTimeout(std::time::Duration),
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    #[error("chunk stream: {0}")]
    Chunk(#[from] ChunkError),
    #[error("bad {what} message: {reason}")]
    BadMessage { what: &'static str, reason: String },
    #[error("AMF0 in {what}: {source}")]
    Amf {
        what: &'static str,
        #[source]
        source: AmfError,
    },
    #[error(transparent)]
    Outbound(#[from] OutboundError),
    #[error("{0}")]
    Unsupported(FlvError),
    #[error("publish rejected: {0}")]
    Rejected(String),
    #[error("{0}")]
    Refused(String),
}

/// How a connection ended without a protocol error.
#[derive(Debug)]
pub(crate) enum EndReason {
    PeerClosed,
    Kicked,
    MediaClosed,
    Shutdown,
}

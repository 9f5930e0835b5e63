use std::net::SocketAddr;
use std::time::Duration;

/// RTMP listener configuration.
#[derive(Debug, Clone)]
pub struct RtmpSettings {
    pub listen: SocketAddr,
    /// Chunk size we send with (announced with Set Chunk Size after connect).
    pub chunk_size: u32,
    /// Window Acknowledgement Size we announce. We also acknowledge the
    /// peer's bytes at this interval unless the peer announces its own.
    pub window_ack_size: u32,
    /// Set Peer Bandwidth we announce (dynamic).
    pub peer_bandwidth: u32,
    /// The whole C0..C2 exchange must finish within this.
    pub handshake_timeout: Duration,
    /// A connection that sends nothing (and accepts nothing) this long is closed.
    pub idle_timeout: Duration,
    /// Largest RTMP message accepted (a keyframe must fit).
    pub max_message_size: u32,
}

impl Default for RtmpSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 1935)),
            chunk_size: 4096,
            window_ack_size: 2_500_000,
            peer_bandwidth: 2_500_000,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(20),
            max_message_size: 8 * 1024 * 1024,
        }
    }
}

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
    /// Largest RTMP message accepted once a publish is accepted (a keyframe
    /// must fit).
    pub max_message_size: u32,
    /// Largest RTMP message accepted before that: commands are small, and
    /// anyone can connect.
    pub max_message_size_before_publish: u32,
    /// Distinct chunk stream ids one connection may use.
    pub max_chunk_streams: usize,
    /// From accept to a publish handed to the gate (the gate's own timeout
    /// covers its answer).
    pub publish_timeout: Duration,
    /// Open connections on the listener, published or not.
    pub max_connections: usize,
    /// Open connections from one IPv4 address or IPv6 /64.
    pub max_connections_per_ip: usize,
    /// A timestamp step larger than this (either way, between consecutive
    /// packets of a track) is rebased.
    pub max_timestamp_jump_ms: u32,
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
            max_message_size_before_publish: 64 * 1024,
            max_chunk_streams: 64,
            publish_timeout: Duration::from_secs(10),
            max_connections: 1000,
            max_connections_per_ip: 32,
            max_timestamp_jump_ms: 10_000,
        }
    }
}

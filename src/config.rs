//! Server configuration: embedded defaults, then an optional TOML file, then
//! `PULSE_*` environment variables, each layer overriding the one before.
//!
//! Every key has an environment name derived from its path: `rtmp.listen` is
//! `PULSE_RTMP_LISTEN`, `hls.part_target_ms` is `PULSE_HLS_PART_TARGET_MS`,
//! top-level `data_dir` is `PULSE_DATA_DIR`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::control::keys::Secret;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("environment variable {var}={value:?}: expected {expected}")]
    Env {
        var: String,
        value: String,
        expected: &'static str,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// SQLite database, signing keys and the on-disk media window live here.
    pub data_dir: PathBuf,
    /// Base URL printed in playback URLs. Empty: derived from `http.listen`.
    pub public_url: String,
    /// Directory of ladder profiles (`<name>.toml`).
    pub pipelines_dir: PathBuf,
    /// Profile used by streams that name none.
    pub default_profile: String,
    /// After a publisher leaves, how long its stream waits for it to come
    /// back before the playlists end (ENDLIST).
    pub reconnect_window_secs: u64,
    pub rtmp: RtmpConfig,
    pub whip: WhipConfig,
    pub http: HttpConfig,
    pub hls: HlsConfig,
    pub playback: PlaybackConfig,
    pub auth: AuthConfig,
    pub admin: AdminConfig,
    pub webhooks: WebhooksConfig,
    pub viewers: ViewersConfig,
    pub storage: StorageConfig,
    pub recordings: RecordingsConfig,
    pub media: MediaConfig,
    pub overload: OverloadConfig,
}

/// Overload: detecting a ladder that falls behind real time, shedding its
/// encodes, and admitting transcoding ladders only within a budget.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OverloadConfig {
    /// Watch ladders and shed encodes when they fall behind.
    pub enabled: bool,
    /// A ladder's speed (output media time per wall time) is judged over this window.
    pub window_secs: u64,
    /// Below this speed, with media piling up inside the ladder, it is behind.
    pub min_speed: f64,
    /// Media in flight inside a ladder from which the ladder, not the
    /// publisher, is the bottleneck.
    pub min_backlog_ms: u64,
    /// Caught up this long before one shedding step is undone.
    pub restore_after_secs: u64,
    /// The most a shed rung's frame rate is divided by.
    pub max_frame_rate_divisor: u32,
    /// Source video waiting for the decoder from which the encode branch
    /// skips ahead to a keyframe (the passthrough copy never waits); 0: never.
    pub max_encode_backlog_ms: u64,
    /// Transcoding ladders live at once; 0: one per CPU core.
    pub transcode_budget: usize,
    /// A publish over the budget: "passthrough" (admitted without encodes)
    /// or "refuse" (NetStream.Publish.Rejected / WHIP refusal).
    pub over_budget: String,
}

impl Default for OverloadConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            window_secs: 5,
            min_speed: 0.95,
            min_backlog_ms: 1000,
            restore_after_secs: 5,
            max_frame_rate_divisor: 8,
            max_encode_backlog_ms: 1000,
            transcode_budget: 0,
            over_budget: "passthrough".into(),
        }
    }
}

impl OverloadConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=300).contains(&self.window_secs) || !(1..=3600).contains(&self.restore_after_secs) {
            return Err(ConfigError::Invalid(
                "overload.window_secs must be 1-300 and overload.restore_after_secs 1-3600".into(),
            ));
        }
        if !(self.min_speed > 0.0 && self.min_speed <= 1.0) {
            return Err(ConfigError::Invalid("overload.min_speed must be in (0, 1]".into()));
        }
        if !(1..=64).contains(&self.max_frame_rate_divisor) || self.min_backlog_ms == 0 {
            return Err(ConfigError::Invalid(
                "overload.max_frame_rate_divisor must be 1-64 and overload.min_backlog_ms at least 1".into(),
            ));
        }
        if self.max_encode_backlog_ms > 60_000 {
            return Err(ConfigError::Invalid(
                "overload.max_encode_backlog_ms must be 0 (never skip) to 60000".into(),
            ));
        }
        if !matches!(self.over_budget.as_str(), "passthrough" | "refuse") {
            return Err(ConfigError::Invalid(format!(
                "overload.over_budget must be \"passthrough\" or \"refuse\", not {:?}",
                self.over_budget
            )));
        }
        Ok(())
    }

    /// The transcode budget with 0 resolved to the core count.
    pub fn effective_transcode_budget(&self) -> usize {
        match self.transcode_budget {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

/// Limits of the media stage (the ladder) against what publishers send.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// A timestamp step larger than this, either way, on one track is a
    /// discontinuity: the frame is rebased to just after the previous one.
    pub max_timestamp_jump_ms: u64,
    /// Media a ladder buffers while it discovers the tracks (before its
    /// pipeline exists); reaching it builds with the tracks seen so far.
    pub discovery_buffer_bytes: usize,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            max_timestamp_jump_ms: 10_000,
            discovery_buffer_bytes: 16 * 1024 * 1024,
        }
    }
}

impl MediaConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(100..=3_600_000).contains(&self.max_timestamp_jump_ms) {
            return Err(ConfigError::Invalid(
                "media.max_timestamp_jump_ms must be between 100 and 3600000".into(),
            ));
        }
        if !(64 * 1024..=1024 * 1024 * 1024).contains(&self.discovery_buffer_bytes) {
            return Err(ConfigError::Invalid(
                "media.discovery_buffer_bytes must be between 65536 and 1073741824".into(),
            ));
        }
        Ok(())
    }
}

/// Where media objects go (see `storage/`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `fs` (files under `data_dir/media`, served by the edge) or `s3`.
    pub backend: String,
    pub bucket: String,
    /// Key prefix inside the bucket ("" for the root).
    pub prefix: String,
    /// For S3-compatibles (R2, MinIO); empty: AWS S3.
    pub endpoint_url: String,
    /// Empty: the AWS chain's region, else `auto` with an endpoint (R2), else `us-east-1`.
    pub region: String,
    /// Path-style requests (`endpoint/bucket/key`), which most S3-compatibles need.
    pub force_path_style: bool,
    /// Empty: the standard AWS chain (AWS_ACCESS_KEY_ID…, profiles, instance roles).
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// Per-request timeout.
    pub timeout_secs: u64,
    /// Uploads in flight at once, per bucket.
    pub concurrency: usize,
    /// Bytes queued per bucket before the oldest queued parts, then segments, are dropped.
    pub buffer_mib: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            backend: "fs".into(),
            bucket: String::new(),
            prefix: String::new(),
            endpoint_url: String::new(),
            region: String::new(),
            force_path_style: false,
            access_key_id: String::new(),
            secret_access_key: Secret::default(),
            timeout_secs: 10,
            concurrency: 8,
            buffer_mib: 256,
        }
    }
}

/// Recordings (apps with `record`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RecordingsConfig {
    /// At stream end, how long finalising waits for the stream's uploads
    /// to land before it writes the playlists with what the store has.
    pub settle_timeout_secs: u64,
}

impl Default for RecordingsConfig {
    fn default() -> Self {
        Self {
            settle_timeout_secs: 120,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RtmpConfig {
    pub listen: SocketAddr,
    /// Base printed as `rtmp_url`. Empty: `rtmp://<public host>:<port>/live`.
    pub public_url: String,
    /// Chunk size we announce to publishers.
    pub chunk_size: u32,
    /// Open RTMP connections, published or not. Over it, a new connection is
    /// closed before the handshake.
    pub max_connections: usize,
    /// Open RTMP connections from one IPv4 address or IPv6 /64 (encoders
    /// behind one NAT share it; OBS reconnects before the old socket times out).
    pub max_connections_per_ip: usize,
    /// From accept to `publish`: a connection that has not asked to publish
    /// by then is closed.
    pub publish_timeout_secs: u64,
    /// Largest RTMP message before a publish is accepted (commands only).
    pub max_message_size_before_publish: u32,
    /// Largest RTMP message of an accepted publisher (a keyframe must fit).
    pub max_message_size: u32,
    /// Distinct chunk stream ids one connection may use (encoders use < 10).
    pub max_chunk_streams: usize,
}

impl RtmpConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_connections == 0 || self.max_connections_per_ip == 0 {
            return Err(ConfigError::Invalid(
                "rtmp.max_connections and rtmp.max_connections_per_ip must be at least 1".into(),
            ));
        }
        if !(1..=300).contains(&self.publish_timeout_secs) {
            return Err(ConfigError::Invalid("rtmp.publish_timeout_secs must be 1-300".into()));
        }
        // An RTMP message length is 24 bits.
        if !(64 * 1024..=0xff_ffff).contains(&self.max_message_size)
            || !(4096..=self.max_message_size).contains(&self.max_message_size_before_publish)
        {
            return Err(ConfigError::Invalid(
                "rtmp.max_message_size must be 65536-16777215 and rtmp.max_message_size_before_publish \
                 4096-rtmp.max_message_size"
                    .into(),
            ));
        }
        if !(8..=65_599).contains(&self.max_chunk_streams) {
            return Err(ConfigError::Invalid("rtmp.max_chunk_streams must be 8-65599".into()));
        }
        Ok(())
    }
}

/// WHIP (WebRTC) ingest on the HTTP listener: `POST /whip`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WhipConfig {
    pub enabled: bool,
    /// Public IP or hostname of this server behind a 1:1 NAT (cloud VMs):
    /// advertised as an extra host candidate beside each local address.
    /// Empty: local addresses only.
    pub public_host: String,
    /// UDP ports ICE may bind, one per session (libnice cannot share one
    /// port between sessions). Open this range in the firewall; 0 and 0
    /// let the OS pick any port.
    pub udp_port_min: u16,
    pub udp_port_max: u16,
    /// `stun://host:port`: gives us a server-reflexive candidate, and is
    /// offered to clients in a `Link` header. Empty: none.
    pub stun_server: String,
    /// `turn://user:password@host:port` (or `turns://`): a relay, for us and
    /// for clients. Empty: none. Holds a password, so never printed.
    pub turn_server: Secret,
    /// Concurrent WHIP sessions; more get 503.
    pub max_sessions: usize,
    /// Concurrent WHIP sessions from one client IP; more get 503.
    pub max_sessions_per_ip: usize,
    /// No media for this long ends a session.
    pub idle_timeout_secs: u64,
    /// How long the jitter buffer waits for a retransmission (NACK).
    pub jitter_buffer_ms: u32,
}

impl Default for WhipConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            public_host: String::new(),
            udp_port_min: 0,
            udp_port_max: 0,
            stun_server: String::new(),
            turn_server: Secret::default(),
            max_sessions: 64,
            max_sessions_per_ip: 4,
            idle_timeout_secs: 15,
            jitter_buffer_ms: 200,
        }
    }
}

impl WhipConfig {
    /// `Link` header values (RFC 9725 §4.6) for the configured ICE servers.
    pub fn ice_server_links(&self) -> Vec<String> {
        let mut links = Vec::new();
        if let Some(hostport) = strip_scheme(&self.stun_server, &["stun"]) {
            links.push(format!("<stun:{hostport}>; rel=\"ice-server\""));
        }
        let turn_server = self.turn_server.expose();
        if let Some(rest) = strip_scheme(turn_server, &["turn", "turns"]) {
            let scheme = if turn_server.starts_with("turns") {
                "turns"
            } else {
                "turn"
            };
            match rest.rsplit_once('@') {
                Some((userinfo, hostport)) => {
                    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                    links.push(format!(
                        "<{scheme}:{hostport}>; rel=\"ice-server\"; username=\"{user}\"; credential=\"{password}\"; credential-type=\"password\""
                    ));
                }
                None => links.push(format!("<{scheme}:{rest}>; rel=\"ice-server\"")),
            }
        }
        links
    }

    /// In webrtcbin's form (`stun://…`, `turn://…`).
    pub fn webrtcbin_server(url: &str, schemes: &[&str]) -> Option<String> {
        let rest = strip_scheme(url, schemes)?;
        let scheme = schemes.iter().find(|s| url.starts_with(&format!("{s}:")))?;
        Some(format!("{scheme}://{rest}"))
    }

    pub fn port_range(&self) -> Option<(u16, u16)> {
        (self.udp_port_min != 0).then_some((self.udp_port_min, self.udp_port_max))
    }
}

/// `stun://host:port` or `stun:host:port` → `host:port`; `None` when empty.
fn strip_scheme<'a>(url: &'a str, schemes: &[&str]) -> Option<&'a str> {
    let url = url.trim();
    // Longest scheme first, so `turns:` is not read as `turn:` + `s:`.
    let mut sorted: Vec<&&str> = schemes.iter().collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
    sorted.into_iter().find_map(|scheme| {
        let rest = url.strip_prefix(*scheme)?.strip_prefix(':')?;
        let rest = rest.trim_start_matches("//");
        (!rest.is_empty()).then_some(rest)
    })
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// A connection must send a complete request head within this long of
    /// being ready for one: of its accept, or of the end of its previous
    /// response. hyper runs one timer for both, so this is also the
    /// keep-alive idle timeout.
    pub header_read_timeout_secs: u64,
    /// A request (body included) must be answered within this long, or it
    /// gets 408 and the connection closes. Blocking LL-HLS requests and the
    /// event feed are exempt: they have their own bounds.
    pub request_timeout_secs: u64,
    /// The largest request head (request line and headers) a client may
    /// send; hyper's read buffer per connection, so it also bounds what an
    /// idle or trickling connection can make us hold.
    pub max_request_head_bytes: usize,
    /// Open HTTP connections at once; more are closed at accept. Keep it
    /// well below the open-file limit (RTMP, WHIP and files need some).
    pub max_connections: usize,
    /// Open HTTP connections per client address (an IPv6 /64 counts as one).
    /// Behind a CDN or a load balancer every viewer shares its few
    /// addresses: raise this there.
    pub max_connections_per_ip: usize,
    /// Blocking LL-HLS requests (`_HLS_msn`, preload-hinted parts) held at
    /// once per client address; more are answered 429 at once.
    pub max_blocking_per_ip: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HlsConfig {
    /// LL-HLS part target (PART-TARGET).
    pub part_target_ms: u64,
    /// Segment target duration.
    pub segment_target_ms: u64,
    /// Segments listed in a live playlist.
    pub window_segments: usize,
    /// Encrypt with AES-128.
    pub encrypt: bool,
    /// A new content key every N segments.
    pub key_rotation_segments: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PlaybackConfig {
    /// Lifetime of playback URLs printed by `stream create` and at start-up.
    pub default_token_ttl_secs: u64,
    /// Seconds of clock skew tolerated when checking `exp`/`nbf`.
    pub token_leeway_secs: u64,
}

/// The admin API (`/api/v1`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Larger request bodies get 413. The largest legitimate one is a custom
    /// ladder's TOML, a few KiB.
    pub body_limit_bytes: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            body_limit_bytes: 64 * 1024,
        }
    }
}

/// Viewer sessions (see `control::viewers`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ViewersConfig {
    /// A viewer without a playlist request for this long has left.
    pub session_timeout_secs: u64,
    /// Sessions counted at once, across streams; beyond, viewers are served but not counted.
    pub max_sessions: usize,
    /// New sessions one playback token may open per `session_window_secs`;
    /// beyond, its master playlist requests get 429. A token is normally
    /// one viewer: raise this when one token is shared by many.
    pub max_sessions_per_token: u32,
    pub session_window_secs: u64,
}

impl Default for ViewersConfig {
    fn default() -> Self {
        Self {
            session_timeout_secs: 30,
            max_sessions: 200_000,
            max_sessions_per_token: 20,
            session_window_secs: 60,
        }
    }
}

/// Lifecycle webhooks. Lists are comma-separated so that they can come from
/// the environment too.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Networks (CIDR) endpoints may reach although they are loopback,
    /// private or link-local, e.g. `"10.20.0.0/16"`. Empty: none.
    pub allow_networks: String,
    /// Waits between attempts, in seconds; one attempt more than entries.
    pub retry_schedule_secs: String,
    /// Per attempt, connection included.
    pub timeout_secs: u64,
    /// Pending events per endpoint beyond which new ones are dead-lettered.
    pub max_backlog: u64,
    /// Requests in flight per endpoint (each for a different stream).
    pub lanes_in_flight: u32,
    /// How long the old secret keeps signing after a rotation.
    pub secret_rollover_secs: u64,
    /// Events (and their delivery history) older than this are deleted once
    /// no endpoint is still owed them.
    pub retention_days: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            allow_networks: String::new(),
            retry_schedule_secs: "5,300,1800,7200,18000,36000,36000".into(),
            timeout_secs: 10,
            max_backlog: 10_000,
            lanes_in_flight: 4,
            secret_rollover_secs: 24 * 3600,
            retention_days: 30,
        }
    }
}

impl WebhooksConfig {
    pub fn allowed_networks(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        comma_list(&self.allow_networks)
            .map(|net| {
                net.parse().map_err(|_| {
                    ConfigError::Invalid(format!("webhooks.allow_networks: {net:?} is not a CIDR network"))
                })
            })
            .collect()
    }

    pub fn retry_schedule(&self) -> Result<Vec<u64>, ConfigError> {
        let delays: Vec<u64> = comma_list(&self.retry_schedule_secs)
            .map(|d| {
                d.parse().map_err(|_| {
                    ConfigError::Invalid(format!(
                        "webhooks.retry_schedule_secs: {d:?} is not a number of seconds"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        if delays.is_empty() || delays.len() > 50 {
            return Err(ConfigError::Invalid(
                "webhooks.retry_schedule_secs needs 1 to 50 delays".into(),
            ));
        }
        Ok(delays)
    }
}

fn comma_list(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Who decides whether a publish is allowed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `embedded` (our store) or `http` (the operator's control plane).
    pub mode: String,
    /// `http` mode: the URL every publish is POSTed to. It may carry
    /// credentials (userinfo, a query token), so it is logged without them.
    pub url: Secret,
    /// `http` mode: the HMAC-SHA256 key the request body is signed with.
    pub secret: Secret,
    /// `http` mode: no answer within this denies the publish (fail closed).
    pub timeout_ms: u64,
    /// `http` mode: how long an allow is reused while the control plane is
    /// down (timeout, unreachable, 5xx). 0 = never.
    pub cache_ttl_secs: u64,
    /// Failed publish attempts allowed per client address per minute, after the burst.
    pub failed_attempts_per_minute: u32,
    pub failed_attempts_burst: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: "embedded".into(),
            url: Secret::default(),
            secret: Secret::default(),
            timeout_ms: 2000,
            cache_ttl_secs: 0,
            failed_attempts_per_minute: 10,
            failed_attempts_burst: 10,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            public_url: String::new(),
            pipelines_dir: PathBuf::from("./pipelines"),
            default_profile: "default".into(),
            reconnect_window_secs: 30,
            rtmp: RtmpConfig::default(),
            whip: WhipConfig::default(),
            http: HttpConfig::default(),
            hls: HlsConfig::default(),
            playback: PlaybackConfig::default(),
            auth: AuthConfig::default(),
            admin: AdminConfig::default(),
            webhooks: WebhooksConfig::default(),
            viewers: ViewersConfig::default(),
            storage: StorageConfig::default(),
            recordings: RecordingsConfig::default(),
            media: MediaConfig::default(),
            overload: OverloadConfig::default(),
        }
    }
}

impl Default for RtmpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 1935)),
            public_url: String::new(),
            chunk_size: 4096,
            max_connections: 1000,
            max_connections_per_ip: 32,
            publish_timeout_secs: 10,
            max_message_size_before_publish: 64 * 1024,
            max_message_size: 8 * 1024 * 1024,
            max_chunk_streams: 64,
        }
    }
}

impl HttpConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=300).contains(&self.header_read_timeout_secs) || !(1..=3600).contains(&self.request_timeout_secs) {
            return Err(ConfigError::Invalid(
                "http.header_read_timeout_secs must be 1-300 and http.request_timeout_secs 1-3600".into(),
            ));
        }
        // hyper refuses a read buffer under 8 KiB.
        if !(8192..=1024 * 1024).contains(&self.max_request_head_bytes) {
            return Err(ConfigError::Invalid(
                "http.max_request_head_bytes must be between 8192 and 1048576".into(),
            ));
        }
        if self.max_connections == 0 || self.max_connections_per_ip == 0 || self.max_blocking_per_ip == 0 {
            return Err(ConfigError::Invalid(
                "http.max_connections, http.max_connections_per_ip and http.max_blocking_per_ip must be at least 1"
                    .into(),
            ));
        }
        Ok(())
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            header_read_timeout_secs: 10,
            request_timeout_secs: 30,
            max_request_head_bytes: 64 * 1024,
            max_connections: 10_000,
            max_connections_per_ip: 256,
            max_blocking_per_ip: 100,
        }
    }
}

impl Default for HlsConfig {
    fn default() -> Self {
        Self {
            part_target_ms: 200,
            segment_target_ms: 2000,
            window_segments: 10,
            encrypt: true,
            key_rotation_segments: 10,
        }
    }
}

impl Default for PlaybackConfig {
    fn default() -> Self {
        Self {
            default_token_ttl_secs: 24 * 3600,
            token_leeway_secs: 5,
        }
    }
}

/// The file used when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "pulse-edge.toml";

impl Config {
    /// Defaults, then `path` (or `pulse-edge.toml` if present), then the environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k.starts_with("PULSE_")).collect();
        let file = match path {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.exists()),
        };
        let text = match &file {
            Some(p) => Some(std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.clone(),
                source,
            })?),
            None => None,
        };
        Self::from_layers(text.as_deref().map(|t| (file.clone().unwrap_or_default(), t)), &vars)
    }

    fn from_layers(file: Option<(PathBuf, &str)>, env: &[(String, String)]) -> Result<Self, ConfigError> {
        let mut merged = toml::Value::try_from(Config::default())
            .map_err(|e| ConfigError::Invalid(format!("defaults do not serialise: {e}")))?;
        if let Some((path, text)) = file {
            // Parse into the typed struct first so unknown keys are reported against the file.
            let typed: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
                path: path.clone(),
                source,
            })?;
            merged = toml::Value::try_from(typed)
                .map_err(|e| ConfigError::Invalid(format!("config does not serialise: {e}")))?;
        }
        apply_env(&mut merged, "PULSE", env)?;
        let config: Config = merged
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let h = &self.hls;
        if h.part_target_ms < 50 || h.part_target_ms > 2000 {
            return Err(ConfigError::Invalid(
                "hls.part_target_ms must be between 50 and 2000".into(),
            ));
        }
        if h.segment_target_ms < h.part_target_ms * 2 {
            return Err(ConfigError::Invalid(
                "hls.segment_target_ms must be at least twice hls.part_target_ms".into(),
            ));
        }
        if h.window_segments < 3 {
            return Err(ConfigError::Invalid("hls.window_segments must be at least 3".into()));
        }
        if h.key_rotation_segments == 0 {
            return Err(ConfigError::Invalid(
                "hls.key_rotation_segments must be at least 1".into(),
            ));
        }
        let w = &self.whip;
        if (w.udp_port_min == 0) != (w.udp_port_max == 0) || w.udp_port_min > w.udp_port_max {
            return Err(ConfigError::Invalid(
                "whip.udp_port_min and whip.udp_port_max: both 0 (any port) or a range with min <= max".into(),
            ));
        }
        if w.max_sessions == 0
            || w.max_sessions_per_ip == 0
            || w.idle_timeout_secs == 0
            || !(20..=5000).contains(&w.jitter_buffer_ms)
        {
            return Err(ConfigError::Invalid(
                "whip.max_sessions, whip.max_sessions_per_ip and whip.idle_timeout_secs must be at least 1, whip.jitter_buffer_ms 20-5000".into(),
            ));
        }
        if !w.stun_server.is_empty() && strip_scheme(&w.stun_server, &["stun"]).is_none() {
            return Err(ConfigError::Invalid(
                "whip.stun_server must look like stun://host:port".into(),
            ));
        }
        if !w.turn_server.is_empty() && strip_scheme(w.turn_server.expose(), &["turn", "turns"]).is_none() {
            return Err(ConfigError::Invalid(
                "whip.turn_server must look like turn://user:password@host:port".into(),
            ));
        }
        let st = &self.storage;
        match st.backend.as_str() {
            "fs" => {}
            "s3" if st.bucket.is_empty() => {
                return Err(ConfigError::Invalid(
                    "storage.backend = \"s3\" needs storage.bucket".into(),
                ));
            }
            "s3" => {}
            other => {
                return Err(ConfigError::Invalid(format!(
                    "storage.backend must be \"fs\" or \"s3\", not {other:?}"
                )))
            }
        }
        if st.access_key_id.is_empty() != st.secret_access_key.is_empty() {
            return Err(ConfigError::Invalid(
                "storage.access_key_id and storage.secret_access_key go together".into(),
            ));
        }
        if st.concurrency == 0 || st.buffer_mib == 0 || st.timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "storage.concurrency, storage.buffer_mib and storage.timeout_secs must be at least 1".into(),
            ));
        }
        let a = &self.auth;
        match a.mode.as_str() {
            "embedded" => {}
            "http" => {
                if !(a.url.expose().starts_with("http://") || a.url.expose().starts_with("https://")) {
                    return Err(ConfigError::Invalid(
                        "auth.mode = \"http\" needs auth.url (http:// or https://)".into(),
                    ));
                }
                if a.secret.expose().len() < 16 {
                    return Err(ConfigError::Invalid(
                        "auth.mode = \"http\" needs auth.secret of at least 16 characters (the HMAC key)".into(),
                    ));
                }
            }
            other => {
                return Err(ConfigError::Invalid(format!(
                    "auth.mode {other:?} is not one of \"embedded\", \"http\""
                )))
            }
        }
        if a.timeout_ms == 0 || a.timeout_ms > 60_000 {
            return Err(ConfigError::Invalid(
                "auth.timeout_ms must be between 1 and 60000".into(),
            ));
        }
        if a.failed_attempts_per_minute == 0 || a.failed_attempts_burst == 0 {
            return Err(ConfigError::Invalid(
                "auth.failed_attempts_per_minute and auth.failed_attempts_burst must be at least 1".into(),
            ));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.admin.body_limit_bytes) {
            return Err(ConfigError::Invalid(
                "admin.body_limit_bytes must be between 1024 and 16777216".into(),
            ));
        }
        if !(1..=3600).contains(&self.viewers.session_timeout_secs) || self.viewers.max_sessions == 0 {
            return Err(ConfigError::Invalid(
                "viewers.session_timeout_secs must be 1-3600 and viewers.max_sessions at least 1".into(),
            ));
        }
        if self.viewers.max_sessions_per_token == 0 || !(1..=86_400).contains(&self.viewers.session_window_secs) {
            return Err(ConfigError::Invalid(
                "viewers.max_sessions_per_token must be at least 1 and viewers.session_window_secs 1-86400".into(),
            ));
        }
        self.http.validate()?;
        self.media.validate()?;
        self.overload.validate()?;
        self.rtmp.validate()?;
        self.webhooks.allowed_networks()?;
        self.webhooks.retry_schedule()?;
        if !(1..=300).contains(&self.webhooks.timeout_secs)
            || self.webhooks.max_backlog == 0
            || !(1..=64).contains(&self.webhooks.lanes_in_flight)
            || !(1..=3650).contains(&self.webhooks.retention_days)
        {
            return Err(ConfigError::Invalid(
                "webhooks: timeout_secs must be 1-300, max_backlog at least 1, lanes_in_flight 1-64, retention_days 1-3650"
                    .into(),
            ));
        }
        if !self.public_url.is_empty() && !self.public_url.starts_with("http") {
            return Err(ConfigError::Invalid(
                "public_url must start with http:// or https://".into(),
            ));
        }
        Ok(())
    }

    /// Base URL for playback links, without a trailing slash.
    pub fn public_http_base(&self) -> String {
        if !self.public_url.is_empty() {
            return self.public_url.trim_end_matches('/').to_owned();
        }
        format!("http://{}", loopback_if_unspecified(self.http.listen))
    }

    /// The `rtmp://…/live` URL publishers point their encoder at.
    pub fn public_rtmp_base(&self) -> String {
        if !self.rtmp.public_url.is_empty() {
            return self.rtmp.public_url.trim_end_matches('/').to_owned();
        }
        let host = if self.public_url.is_empty() {
            loopback_if_unspecified(self.rtmp.listen).ip().to_string()
        } else {
            host_of(&self.public_url).unwrap_or_else(|| "127.0.0.1".into())
        };
        format!("rtmp://{}:{}/live", host, self.rtmp.listen.port())
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("pulse-edge.db")
    }

    pub fn media_dir(&self) -> PathBuf {
        self.data_dir.join("media")
    }
}

fn loopback_if_unspecified(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    }
}

fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split_once(']').map(|(h, _)| format!("[{h}]"));
    }
    Some(authority.split(':').next()?.to_owned()).filter(|h| !h.is_empty())
}

/// Overrides every leaf of `value` whose environment name is set. The name is
/// derived from the key path, so every documented key can be overridden.
fn apply_env(value: &mut toml::Value, prefix: &str, env: &[(String, String)]) -> Result<(), ConfigError> {
    let toml::Value::Table(table) = value else {
        return Ok(());
    };
    for (key, leaf) in table.iter_mut() {
        let name = format!("{prefix}_{}", key.to_ascii_uppercase());
        if leaf.is_table() {
            apply_env(leaf, &name, env)?;
            continue;
        }
        let Some((_, raw)) = env.iter().find(|(k, _)| *k == name) else {
            continue;
        };
        let bad = |expected| ConfigError::Env {
            var: name.clone(),
            value: raw.clone(),
            expected,
        };
        *leaf = match leaf {
            toml::Value::Integer(_) => toml::Value::Integer(raw.trim().parse().map_err(|_| bad("an integer"))?),
            toml::Value::Float(_) => toml::Value::Float(raw.trim().parse().map_err(|_| bad("a number"))?),
            toml::Value::Boolean(_) => toml::Value::Boolean(match raw.trim() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => return Err(bad("true or false")),
            }),
            _ => toml::Value::String(raw.clone()),
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn whip_ice_servers_become_link_headers_and_webrtcbin_urls() {
        let c = Config::from_layers(
            None,
            &env(&[
                ("PULSE_WHIP_STUN_SERVER", "stun://stun.example.net:3478"),
                ("PULSE_WHIP_TURN_SERVER", "turns://alice:s3cret@turn.example.net:5349"),
                ("PULSE_WHIP_UDP_PORT_MIN", "50000"),
                ("PULSE_WHIP_UDP_PORT_MAX", "50099"),
            ]),
        )
        .expect("config");
        assert_eq!(
            c.whip.ice_server_links(),
            vec![
                "<stun:stun.example.net:3478>; rel=\"ice-server\"".to_string(),
                "<turns:turn.example.net:5349>; rel=\"ice-server\"; username=\"alice\"; credential=\"s3cret\"; credential-type=\"password\"".to_string(),
            ]
        );
        assert_eq!(
            WhipConfig::webrtcbin_server(c.whip.turn_server.expose(), &["turns", "turn"]).as_deref(),
            Some("turns://alice:s3cret@turn.example.net:5349")
        );
        assert_eq!(
            WhipConfig::webrtcbin_server("stun:stun.example.net:3478", &["stun"]).as_deref(),
            Some("stun://stun.example.net:3478")
        );
        assert_eq!(c.whip.port_range(), Some((50000, 50099)));
        assert!(Config::default().whip.ice_server_links().is_empty());
        for bad in [
            vec![("PULSE_WHIP_UDP_PORT_MIN", "50000")],
            vec![
                ("PULSE_WHIP_UDP_PORT_MIN", "50010"),
                ("PULSE_WHIP_UDP_PORT_MAX", "50000"),
            ],
            vec![("PULSE_WHIP_STUN_SERVER", "stun.example.net")],
            vec![("PULSE_WHIP_TURN_SERVER", "http://turn")],
            vec![("PULSE_WHIP_MAX_SESSIONS", "0")],
        ] {
            assert!(Config::from_layers(None, &env(&bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn defaults_match_the_documented_ports() {
        let c = Config::from_layers(None, &[]).expect("defaults");
        assert_eq!(c.rtmp.listen.port(), 1935);
        assert_eq!(c.http.listen.port(), 8080);
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.public_rtmp_base(), "rtmp://127.0.0.1:1935/live");
        assert_eq!(c.public_http_base(), "http://127.0.0.1:8080");
    }

    #[test]
    fn env_overrides_file_which_overrides_defaults() {
        let file = "data_dir = \"/srv/pulse\"\n[http]\nlisten = \"127.0.0.1:9000\"\n[hls]\npart_target_ms = 300\n";
        let c = Config::from_layers(
            Some((PathBuf::from("t.toml"), file)),
            &env(&[
                ("PULSE_HTTP_LISTEN", "127.0.0.1:9100"),
                ("PULSE_RTMP_LISTEN", "127.0.0.1:19350"),
                ("PULSE_PUBLIC_URL", "https://edge.example.com/"),
                ("PULSE_HLS_ENCRYPT", "false"),
            ]),
        )
        .expect("layers");
        assert_eq!(c.data_dir, PathBuf::from("/srv/pulse"));
        assert_eq!(c.http.listen.port(), 9100);
        assert_eq!(c.hls.part_target_ms, 300);
        assert!(!c.hls.encrypt);
        assert_eq!(c.public_http_base(), "https://edge.example.com");
        assert_eq!(c.public_rtmp_base(), "rtmp://edge.example.com:19350/live");
    }

    #[test]
    fn http_auth_needs_a_url_and_a_secret_and_never_prints_the_secret() {
        let err = Config::from_layers(None, &env(&[("PULSE_AUTH_MODE", "http")])).expect_err("no url");
        assert!(err.to_string().contains("auth.url"), "{err}");
        let err = Config::from_layers(
            None,
            &env(&[("PULSE_AUTH_MODE", "http"), ("PULSE_AUTH_URL", "http://cp.local/auth")]),
        )
        .expect_err("no secret");
        assert!(err.to_string().contains("auth.secret"), "{err}");
        let err = Config::from_layers(None, &env(&[("PULSE_AUTH_MODE", "ldap")])).expect_err("bad mode");
        assert!(err.to_string().contains("ldap"), "{err}");
        let c = Config::from_layers(
            None,
            &env(&[
                ("PULSE_AUTH_MODE", "http"),
                ("PULSE_AUTH_URL", "https://cp.local/auth"),
                ("PULSE_AUTH_SECRET", "a-long-shared-secret-value"),
                ("PULSE_AUTH_CACHE_TTL_SECS", "30"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.auth.cache_ttl_secs, 30);
        assert!(!format!("{c:?}").contains("a-long-shared-secret-value"));
    }

    #[test]
    fn debug_output_holds_no_secret() {
        let c = Config::from_layers(
            None,
            &env(&[
                ("PULSE_AUTH_MODE", "http"),
                ("PULSE_AUTH_URL", "https://cp:url-pa55@cp.local/auth?t=url-t0ken"),
                ("PULSE_AUTH_SECRET", "a-long-shared-secret-value"),
                ("PULSE_STORAGE_ACCESS_KEY_ID", "AKIAEXAMPLE"),
                ("PULSE_STORAGE_SECRET_ACCESS_KEY", "s3-secret-key-value"),
                ("PULSE_WHIP_TURN_SERVER", "turn://alice:turn-pa55@turn.example.net:3478"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.storage.secret_access_key.expose(), "s3-secret-key-value");
        let printed = format!("{c:?} {:?} {:?} {:?}", c.auth, c.storage, c.whip);
        for secret in [
            "url-pa55",
            "url-t0ken",
            "a-long-shared-secret-value",
            "s3-secret-key-value",
            "turn-pa55",
        ] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
    }

    #[test]
    fn bad_values_are_named_in_the_error() {
        let err = Config::from_layers(None, &env(&[("PULSE_HLS_PART_TARGET_MS", "fast")])).expect_err("must fail");
        assert!(err.to_string().contains("PULSE_HLS_PART_TARGET_MS"), "{err}");
        let err =
            Config::from_layers(Some((PathBuf::from("x.toml"), "[hls]\nbogus = 1\n")), &[]).expect_err("unknown key");
        assert!(
            err.to_string().contains("x.toml") && err.to_string().contains("bogus"),
            "{err}"
        );
        let err = Config::from_layers(None, &env(&[("PULSE_RTMP_LISTEN", "nope")])).expect_err("bad addr");
        assert!(matches!(err, ConfigError::Invalid(_)), "{err}");
    }

    #[test]
    fn rtmp_limits_have_defaults_env_names_and_bounds() {
        let c = Config::from_layers(None, &[]).expect("defaults");
        assert_eq!((c.rtmp.max_connections, c.rtmp.max_connections_per_ip), (1000, 32));
        assert_eq!(c.rtmp.publish_timeout_secs, 10);
        assert_eq!(c.rtmp.max_message_size_before_publish, 65536);
        let c = Config::from_layers(
            None,
            &env(&[
                ("PULSE_RTMP_MAX_CONNECTIONS_PER_IP", "4"),
                ("PULSE_RTMP_PUBLISH_TIMEOUT_SECS", "3"),
                ("PULSE_RTMP_MAX_CHUNK_STREAMS", "16"),
            ]),
        )
        .expect("env");
        assert_eq!(c.rtmp.max_connections_per_ip, 4);
        assert_eq!(c.rtmp.publish_timeout_secs, 3);
        assert_eq!(c.rtmp.max_chunk_streams, 16);
        for bad in [
            ("PULSE_RTMP_MAX_CONNECTIONS", "0"),
            ("PULSE_RTMP_PUBLISH_TIMEOUT_SECS", "0"),
            ("PULSE_RTMP_MAX_MESSAGE_SIZE_BEFORE_PUBLISH", "16777215"),
            ("PULSE_RTMP_MAX_MESSAGE_SIZE", "16777216"),
            ("PULSE_RTMP_MAX_CHUNK_STREAMS", "70000"),
        ] {
            let err = Config::from_layers(None, &env(&[bad])).expect_err("out of bounds");
            assert!(err.to_string().contains("rtmp."), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_admin_body_limit_is_configurable_within_bounds() {
        assert_eq!(
            Config::from_layers(None, &[]).expect("defaults").admin.body_limit_bytes,
            65536
        );
        let c = Config::from_layers(
            Some((PathBuf::from("x.toml"), "[admin]\nbody_limit_bytes = 4096\n")),
            &[],
        )
        .expect("file");
        assert_eq!(c.admin.body_limit_bytes, 4096);
        let c = Config::from_layers(None, &env(&[("PULSE_ADMIN_BODY_LIMIT_BYTES", "2048")])).expect("env");
        assert_eq!(c.admin.body_limit_bytes, 2048);
        let err = Config::from_layers(None, &env(&[("PULSE_ADMIN_BODY_LIMIT_BYTES", "10")])).expect_err("too small");
        assert!(err.to_string().contains("admin.body_limit_bytes"), "{err}");
    }

    #[test]
    fn webhook_lists_come_comma_separated_from_file_or_environment() {
        let c = Config::from_layers(None, &[]).expect("defaults");
        assert_eq!(
            c.webhooks.retry_schedule().expect("schedule"),
            [5, 300, 1800, 7200, 18000, 36000, 36000]
        );
        assert!(c.webhooks.allowed_networks().expect("none").is_empty());
        let c = Config::from_layers(
            None,
            &env(&[
                ("PULSE_WEBHOOKS_ALLOW_NETWORKS", "127.0.0.0/8, ::1/128"),
                ("PULSE_WEBHOOKS_RETRY_SCHEDULE_SECS", "1,2,4"),
            ]),
        )
        .expect("env");
        assert_eq!(c.webhooks.allowed_networks().expect("nets").len(), 2);
        assert_eq!(c.webhooks.retry_schedule().expect("schedule"), [1, 2, 4]);
        let err = Config::from_layers(None, &env(&[("PULSE_WEBHOOKS_ALLOW_NETWORKS", "localhost")])).expect_err("bad");
        assert!(err.to_string().contains("webhooks.allow_networks"), "{err}");
        let err = Config::from_layers(None, &env(&[("PULSE_WEBHOOKS_RETRY_SCHEDULE_SECS", "soon")])).expect_err("bad");
        assert!(err.to_string().contains("retry_schedule_secs"), "{err}");
    }

    #[test]
    fn http_and_viewer_limits_have_defaults_env_names_and_bounds() {
        let c = Config::from_layers(None, &[]).expect("defaults");
        assert_eq!((c.http.header_read_timeout_secs, c.http.request_timeout_secs), (10, 30));
        assert_eq!(c.http.max_connections, 10_000);
        assert_eq!(c.http.max_connections_per_ip, 256);
        assert_eq!(c.http.max_blocking_per_ip, 100);
        assert_eq!(c.viewers.max_sessions_per_token, 20);
        assert_eq!(c.viewers.session_window_secs, 60);
        let c = Config::from_layers(
            None,
            &env(&[
                ("PULSE_HTTP_MAX_CONNECTIONS_PER_IP", "5000"),
                ("PULSE_HTTP_HEADER_READ_TIMEOUT_SECS", "5"),
                ("PULSE_VIEWERS_MAX_SESSIONS_PER_TOKEN", "1000"),
            ]),
        )
        .expect("env");
        assert_eq!(c.http.max_connections_per_ip, 5000);
        assert_eq!(c.http.header_read_timeout_secs, 5);
        assert_eq!(c.viewers.max_sessions_per_token, 1000);
        for bad in [
            "PULSE_HTTP_HEADER_READ_TIMEOUT_SECS",
            "PULSE_HTTP_REQUEST_TIMEOUT_SECS",
            "PULSE_HTTP_MAX_REQUEST_HEAD_BYTES",
            "PULSE_HTTP_MAX_CONNECTIONS",
            "PULSE_HTTP_MAX_CONNECTIONS_PER_IP",
            "PULSE_HTTP_MAX_BLOCKING_PER_IP",
            "PULSE_VIEWERS_MAX_SESSIONS_PER_TOKEN",
            "PULSE_VIEWERS_SESSION_WINDOW_SECS",
        ] {
            let err = Config::from_layers(None, &env(&[(bad, "0")])).expect_err(bad);
            assert!(matches!(err, ConfigError::Invalid(_)), "{bad}: {err}");
        }
    }
}

//! `pulse-edge`: RTMP in, encrypted LL-HLS ladder out.

mod cli;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use pulse_edge::config::Config;
use pulse_edge::control::{
    self, ControlStore, EventBus, PlaybackTokens, PublishController, PublishSettings, SqliteStore,
};
use pulse_edge::{delivery, hls, ingest, media, storage};

#[derive(Parser)]
#[command(
    name = "pulse-edge",
    version,
    about = "Streaming-media edge server: RTMP in, encrypted LL-HLS ladder out"
)]
struct Cli {
    /// Configuration file (default: ./pulse-edge.toml if present). PULSE_* environment variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Print the demo stream's key even when stdout is not a terminal
        /// (it then lands in journald or `docker logs`).
        #[arg(long)]
        demo: bool,
    },
    #[command(flatten)]
    Local(cli::LocalCommand),
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pulse-edge: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref()).context("loading configuration")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve { demo } => serve(config, demo).await,
            Command::Local(command) => cli::run(&config, command).await,
        }
    })
}

/// A signed master playlist URL, minted as the app's tokens are.
fn playback_url(
    config: &Config,
    tokens: &PlaybackTokens,
    app_id: &str,
    stream_id: &str,
    ttl: Duration,
) -> anyhow::Result<String> {
    let token = tokens.mint_for_app(app_id, stream_id, ttl, None)?;
    Ok(format!(
        "{}/live/{stream_id}/master.m3u8?token={token}",
        config.public_http_base()
    ))
}

fn tokens_for(config: &Config) -> anyhow::Result<PlaybackTokens> {
    Ok(PlaybackTokens::load_or_create(
        &config.data_dir,
        Duration::from_secs(config.playback.token_leeway_secs),
    )?)
}

async fn open_store(config: &Config) -> anyhow::Result<SqliteStore> {
    // Mode 0700, and key files 0600: they and the database hold secrets.
    control::store::permissions::secure_data_dir(&config.data_dir)?;
    Ok(SqliteStore::open(&config.db_path()).await?)
}

fn check_profile(config: &Config, profile: &str) -> anyhow::Result<()> {
    let profiles = media::load_profiles(&config.pipelines_dir)?;
    if !profiles.contains_key(profile) {
        let known: Vec<_> = profiles.keys().collect();
        bail!(
            "unknown profile {profile:?}; {} has {known:?}",
            config.pipelines_dir.display()
        );
    }
    Ok(())
}

/// The server's media store, checked now: a bucket that is missing or
/// refuses our credentials fails the start, naming bucket and endpoint.
async fn open_media_stores(config: &Config) -> anyhow::Result<storage::Stores> {
    let s = &config.storage;
    if s.backend != "s3" {
        return Ok(storage::Stores::fs(config.media_dir()));
    }
    let set = |v: &String| (!v.is_empty()).then(|| v.clone());
    let store = storage::S3Store::new(&storage::S3Settings {
        bucket: s.bucket.clone(),
        prefix: s.prefix.clone(),
        endpoint_url: set(&s.endpoint_url),
        region: set(&s.region),
        force_path_style: s.force_path_style,
        access_key_id: set(&s.access_key_id),
        secret_access_key: (!s.secret_access_key.is_empty()).then(|| s.secret_access_key.clone()),
        timeout: Duration::from_secs(s.timeout_secs),
    })
    .await;
    store
        .check()
        .await
        .context("storage: the configured bucket cannot be used")?;
    tracing::info!(store = %storage::ObjectStore::describe(&store), "media goes to S3");
    Ok(storage::Stores::s3(store, &s.prefix))
}

/// How often counted usage is added to the store (what a crash can lose).
const USAGE_FLUSH_EVERY: Duration = Duration::from_secs(10);
/// At shutdown: how long publish sessions get to end, and then queued
/// uploads to land (a bucket that is down would hold the stop for ever).
const SESSIONS_END_WITHIN: Duration = Duration::from_secs(3);
const UPLOADS_FLUSH_WITHIN: Duration = Duration::from_secs(5);

struct Webhooks {
    lifecycle: Arc<control::Lifecycle>,
    dispatcher: Arc<control::webhooks::Dispatcher>,
    service: Arc<control::webhooks::WebhookService>,
}

/// The outbox, its dispatcher and the endpoint rules. Streams the previous
/// run left open are closed before anything can publish.
async fn start_webhooks(
    config: &Config,
    store: &SqliteStore,
    bus: EventBus,
    shutdown: &CancellationToken,
) -> anyhow::Result<Webhooks> {
    use control::webhooks::{retry::RetrySchedule, sender::Sender, AddressPolicy, DispatchSettings, Dispatcher};
    let event_store: Arc<dyn control::EventStore> = Arc::new(store.clone());
    let lifecycle = Arc::new(control::Lifecycle::new(
        event_store.clone(),
        bus,
        i64::try_from(config.webhooks.max_backlog).unwrap_or(i64::MAX),
        Duration::from_secs(config.reconnect_window_secs),
    ));
    lifecycle
        .close_orphans()
        .await
        .context("closing the streams the previous run left open")?;
    let policy = Arc::new(AddressPolicy::new(config.webhooks.allowed_networks()?));
    let sender = Sender::new(policy.clone(), Duration::from_secs(config.webhooks.timeout_secs))
        .context("building the webhook HTTP client")?;
    let dispatcher = Dispatcher::new(
        event_store.clone(),
        sender,
        DispatchSettings {
            schedule: RetrySchedule::from_secs(&config.webhooks.retry_schedule()?),
            lanes_in_flight: config.webhooks.lanes_in_flight,
        },
    );
    dispatcher.refresh().await;
    tokio::spawn(dispatcher.clone().follow(lifecycle.feed()));
    tokio::spawn(control::webhooks::dispatcher::prune_periodically(
        event_store.clone(),
        Duration::from_secs(config.webhooks.retention_days.saturating_mul(86_400)),
        shutdown.clone(),
    ));
    let service = Arc::new(control::webhooks::WebhookService::new(
        event_store,
        policy,
        dispatcher.clone(),
        lifecycle.clone(),
        Duration::from_secs(config.webhooks.secret_rollover_secs),
    ));
    Ok(Webhooks {
        lifecycle,
        dispatcher,
        service,
    })
}

async fn serve(config: Config, demo: bool) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn,sqlx=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    media::init().context("initialising GStreamer")?;
    let profiles = media::load_profiles(&config.pipelines_dir)
        .with_context(|| format!("loading ladder profiles from {}", config.pipelines_dir.display()))?;
    if !profiles.contains_key(&config.default_profile) {
        bail!(
            "default_profile {:?} is not in {}",
            config.default_profile,
            config.pipelines_dir.display()
        );
    }
    let profiles = Arc::new(profiles);
    let store = open_store(&config).await?;
    let tokens = tokens_for(&config)?;
    tokens.reload(&store).await.context("loading playback keys")?;
    tokio::spawn(reload_playback_keys(tokens.clone(), store.clone()));
    let events = EventBus::default();
    let metrics = control::metrics::Metrics::new()?;
    tokio::spawn(metrics.clone().count_auth_failures(events.subscribe()));
    tokio::spawn(control::events::log_events(events.subscribe()));
    let shutdown = CancellationToken::new();
    let webhooks = start_webhooks(&config, &store, events.clone(), &shutdown).await?;
    let usage_store: Arc<dyn control::UsageStore> = Arc::new(store.clone());
    let usage = control::usage::UsageMeter::new(usage_store.clone());
    let usage_task = tokio::spawn(usage.clone().run(USAGE_FLUSH_EVERY, shutdown.clone()));
    let audience = control::audience::Audience::new(
        control::viewers::ViewerSettings {
            session_timeout: Duration::from_secs(config.viewers.session_timeout_secs),
            max_sessions: config.viewers.max_sessions,
            max_sessions_per_token: config.viewers.max_sessions_per_token,
            token_window: Duration::from_secs(config.viewers.session_window_secs),
            ..control::viewers::ViewerSettings::default()
        },
        usage.clone(),
        tokens.clone(),
        metrics.clone(),
    );
    tokio::spawn(audience.clone().run(webhooks.lifecycle.clone(), shutdown.clone()));

    let part_target = Duration::from_millis(config.hls.part_target_ms);
    let segment_target = Duration::from_millis(config.hls.segment_target_ms);
    let stores = open_media_stores(&config).await?;
    let recorder = control::recordings::Recorder::new(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        stores.clone(),
        tokens.clone(),
        control::recordings::RecorderSettings {
            public_http_base: config.public_http_base(),
            settle_timeout: Duration::from_secs(config.recordings.settle_timeout_secs),
        },
    );
    let store_runtime = store_runtime()?;
    // Freed heap goes back to the kernel while serving (see `memory`).
    let _trimmer = pulse_edge::memory::Trimmer::start().context("starting the heap trimmer")?;
    let packagers = hls::Packagers::new_on(
        hls::HlsSettings {
            part_target,
            segment_target,
            window_segments: config.hls.window_segments,
            key_rotation_segments: config.hls.key_rotation_segments,
            encrypt: config.hls.encrypt,
            store_buffer_bytes: config.storage.buffer_mib.saturating_mul(1024 * 1024),
            store_concurrency: config.storage.concurrency,
            ..hls::HlsSettings::default()
        },
        stores.default_store(),
        store_runtime.handle(),
    )
    .with_recorder(Arc::new(recorder.clone()));
    let recorder_stop = CancellationToken::new();
    let recorder_task = tokio::spawn(recorder.clone().run(
        webhooks.lifecycle.clone(),
        packagers.clone(),
        events.subscribe(),
        recorder_stop.clone(),
    ));
    let controller = PublishController::new(
        control::gate::Admission {
            authorizer: authorizer(&config, &store).await?,
            limiter: control::gate::FailureLimiter::new(control::gate::LimiterSettings {
                failures_per_minute: config.auth.failed_attempts_per_minute,
                burst: config.auth.failed_attempts_burst,
                ..control::gate::LimiterSettings::default()
            }),
        },
        packagers.clone(),
        profiles.clone(),
        PublishSettings {
            default_profile: config.default_profile.clone(),
            ladder: media::LadderSettings {
                part_target,
                segment_target,
                timeline_offset: Duration::ZERO,
                max_timestamp_jump: Duration::from_millis(config.media.max_timestamp_jump_ms),
                discovery_max_bytes: config.media.discovery_buffer_bytes,
                overload: media::OverloadSettings {
                    enabled: config.overload.enabled,
                    window: Duration::from_secs(config.overload.window_secs),
                    min_speed: config.overload.min_speed,
                    min_backlog: Duration::from_millis(config.overload.min_backlog_ms),
                    restore_after: Duration::from_secs(config.overload.restore_after_secs),
                    max_divisor: config.overload.max_frame_rate_divisor,
                    max_encode_backlog: (config.overload.max_encode_backlog_ms > 0)
                        .then(|| Duration::from_millis(config.overload.max_encode_backlog_ms)),
                },
            },
            reconnect_window: Duration::from_secs(config.reconnect_window_secs),
            stores,
            transcode_budget: config.overload.effective_transcode_budget(),
            refuse_over_budget: config.overload.over_budget == "refuse",
        },
        tokens.clone(),
        control::PublishReporting {
            lifecycle: webhooks.lifecycle.clone(),
            metrics: metrics.clone(),
            usage: usage.clone(),
        },
    );

    let rtmp = ingest::rtmp::RtmpServer::bind(
        ingest::rtmp::RtmpSettings {
            listen: config.rtmp.listen,
            chunk_size: config.rtmp.chunk_size,
            max_connections: config.rtmp.max_connections,
            max_connections_per_ip: config.rtmp.max_connections_per_ip,
            publish_timeout: std::time::Duration::from_secs(config.rtmp.publish_timeout_secs),
            max_message_size_before_publish: config.rtmp.max_message_size_before_publish,
            max_message_size: config.rtmp.max_message_size,
            max_chunk_streams: config.rtmp.max_chunk_streams,
            // The ladder rebases at the same threshold (validated <= 1 h).
            max_timestamp_jump_ms: u32::try_from(config.media.max_timestamp_jump_ms).unwrap_or(u32::MAX),
            ..ingest::rtmp::RtmpSettings::default()
        },
        Arc::new(controller.clone()),
    )
    .await
    .with_context(|| format!("binding RTMP on {}", config.rtmp.listen))?;
    // Both listeners' caps draw on the same descriptors.
    pulse_edge::httpd::check_open_file_limit(config.http.max_connections.saturating_add(config.rtmp.max_connections));
    let http = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding HTTP on {}", config.http.listen))?;
    tracing::info!(rtmp = %rtmp.local_addr(), http = %config.http.listen, "pulse-edge listening");

    if config.auth.mode == "embedded" && store.count_streams().await? == 0 {
        let (stream, key) = store
            .create_stream(
                control::model::DEFAULT_APP_ID,
                control::model::NewStream {
                    name: "demo".into(),
                    profile: None,
                },
            )
            .await?;
        let url = playback_url(
            &config,
            &tokens,
            &stream.app_id,
            &stream.id,
            Duration::from_secs(config.playback.default_token_ttl_secs),
        )?;
        let rtmp_url = config.public_rtmp_base();
        let show_key = cli::demo::shows_key(demo, std::io::IsTerminal::is_terminal(&std::io::stdout()));
        let demo = cli::demo::DemoStream {
            stream_id: &stream.id,
            key: &key,
            rtmp_url: &rtmp_url,
            playback_url: &url,
        };
        println!("{}", cli::demo::banner(&demo, show_key));
    } else {
        println!(
            "\npulse-edge is up: RTMP {}  HTTP {}",
            config.public_rtmp_base(),
            config.public_http_base()
        );
        println!("  New stream:   pulse-edge stream create --name NAME   (prints its key and playback URL)\n");
    }

    let rtmp_task = tokio::spawn(rtmp.serve(shutdown.clone()));
    let source_store: Arc<dyn control::store::SourceStore> = Arc::new(store.clone());
    let store: Arc<dyn ControlStore> = Arc::new(store);
    // RTSP pull sources: one puller per enabled source, kept in step with the store.
    let sources = control::sources::SourceRunner::new(
        control::sources::Sources::new(source_store, store.clone()),
        Arc::new(controller.clone()),
    );
    let sources_task = tokio::spawn(sources.clone().run(shutdown.clone()));
    let admin = control::admin::AdminService::new(
        store.clone(),
        controller.clone(),
        tokens.clone(),
        profiles,
        control::admin::AdminSettings {
            public_http_base: config.public_http_base(),
            public_rtmp_base: config.public_rtmp_base(),
            body_limit_bytes: config.admin.body_limit_bytes,
        },
        Arc::new(media::readiness),
        control::admin::Reporting {
            webhooks: webhooks.service.clone(),
            audience: audience.clone(),
            usage: usage_store,
            recordings: Some(recorder.clone()),
            sources: Some(sources),
        },
    );
    let whip = whip_service(&config, Arc::new(controller.clone()), shutdown.clone()).await?;
    let playback = delivery::PlaybackService::new(packagers.clone(), tokens)
        .with_viewers(audience)
        .with_vod(Arc::new(recorder.clone()))
        .with_blocking_cap(config.http.max_blocking_per_ip);
    let mut app = delivery::router(playback).merge(control::admin::router(admin));
    if let Some(whip) = whip {
        app = app.merge(ingest::whip::router(whip));
    }
    let app = app.route(
        "/metrics",
        axum::routing::get(control::metrics::serve_metrics).with_state(metrics.clone()),
    );
    // Inside the metrics layer, so that a 408 is counted like any answer.
    let app = pulse_edge::httpd::with_request_timeout(
        app,
        Duration::from_secs(config.http.request_timeout_secs),
        delivery::LONG_LIVED_ROUTES,
    )
    .layer(axum::middleware::from_fn_with_state(
        metrics,
        control::metrics::track_http,
    ));
    let listener_settings = pulse_edge::httpd::ListenerSettings {
        header_read_timeout: Duration::from_secs(config.http.header_read_timeout_secs),
        max_head_bytes: config.http.max_request_head_bytes,
        max_connections: config.http.max_connections,
        max_connections_per_ip: config.http.max_connections_per_ip,
    };
    let http_task = tokio::spawn(pulse_edge::httpd::serve(http, app, listener_settings, shutdown.clone()));

    wait_for_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    controller.kick_all();
    // Order matters for "nothing lost": sessions end (their last segments go
    // to the packager and their `stream.disconnected` to the store), queued
    // uploads land, the recorder files what landed, then the store closes.
    let still_running = controller.sessions_ended(SESSIONS_END_WITHIN).await;
    if still_running > 0 {
        tracing::warn!(sessions = still_running, "publish sessions still running at shutdown");
    }
    let left = packagers.flush_uploads(UPLOADS_FLUSH_WITHIN).await;
    if left.is_empty() {
        tracing::info!("uploads flushed");
    } else {
        tracing::warn!(
            objects = left.objects,
            deletes = left.deletes,
            bytes = left.bytes,
            "uploads not flushed at shutdown: those objects are not in the store (deletes: left in it)"
        );
    }
    recorder_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), recorder_task).await;
    webhooks.dispatcher.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = rtmp_task.await;
        let _ = sources_task.await;
        let _ = http_task.await;
        // The last usage counts reach the store before it closes.
        let _ = usage_task.await;
    })
    .await;
    store.close().await;
    Ok(())
}

/// The store writers' own runtime: uploads are a few round trips each, and
/// on the main runtime every one of them waits behind whatever viewers have
/// queued there. One thread: the work is I/O (file writes go to its blocking pool).
fn store_runtime() -> anyhow::Result<StoreRuntime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("pulse-store")
        .enable_all()
        .build()
        .map(|runtime| StoreRuntime(Some(runtime)))
        .context("starting the store writers' runtime")
}

/// Shuts its runtime down without waiting when dropped: `serve` drops it on
/// every return, inside the main runtime, where dropping a runtime panics.
/// Queued uploads are flushed before a clean return.
struct StoreRuntime(Option<tokio::runtime::Runtime>);

impl StoreRuntime {
    fn handle(&self) -> Option<tokio::runtime::Handle> {
        self.0.as_ref().map(|runtime| runtime.handle().clone())
    }
}

impl Drop for StoreRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// WHIP on the HTTP listener, unless turned off.
async fn whip_service(
    config: &Config,
    gate: Arc<dyn ingest::PublishGate>,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<Arc<ingest::whip::WhipService>>> {
    let w = &config.whip;
    if !w.enabled {
        return Ok(None);
    }
    let public_ip = match w.public_host.trim() {
        "" => None,
        host => Some(
            tokio::net::lookup_host((host, 0))
                .await
                .ok()
                .and_then(|mut addrs| addrs.next())
                .map(|a| a.ip())
                .with_context(|| format!("whip.public_host {host:?} does not resolve"))?,
        ),
    };
    let settings = ingest::whip::WhipSettings {
        peer: ingest::whip::PeerSettings {
            stun_server: pulse_edge::config::WhipConfig::webrtcbin_server(&w.stun_server, &["stun"]),
            turn_server: pulse_edge::config::WhipConfig::webrtcbin_server(w.turn_server.expose(), &["turns", "turn"])
                .map(Into::into),
            port_range: w.port_range(),
            jitter_latency_ms: w.jitter_buffer_ms,
            gather_timeout: Duration::from_secs(5),
        },
        public_ip,
        max_sessions: w.max_sessions,
        max_sessions_per_ip: w.max_sessions_per_ip,
        idle_timeout: Duration::from_secs(w.idle_timeout_secs),
        ice_server_links: w.ice_server_links(),
        ..ingest::whip::WhipSettings::default()
    };
    tracing::info!(public_ip = ?public_ip, ports = ?w.port_range(), max_sessions = w.max_sessions, "WHIP ingest on POST /whip");
    Ok(Some(ingest::whip::WhipService::new(gate, settings, shutdown)))
}

/// The embedded store, or the operator's control plane (`auth.mode = "http"`).
async fn authorizer(config: &Config, store: &SqliteStore) -> anyhow::Result<Arc<dyn control::gate::PublishAuthorizer>> {
    if config.auth.mode != "http" {
        return Ok(Arc::new(control::gate::EmbeddedAuthorizer::new(Arc::new(
            store.clone(),
        ))));
    }
    let legacy = store.legacy_derived_stream_ids().await?.into_iter().collect();
    let stream_ids = control::keys::StreamIdKey::load_or_create(&config.data_dir, legacy)?;
    let http = control::gate::HttpAuthorizer::new(control::gate::HttpAuthSettings {
        url: config.auth.url.clone(),
        secret: config.auth.secret.clone(),
        timeout: Duration::from_millis(config.auth.timeout_ms),
        cache_ttl: Duration::from_secs(config.auth.cache_ttl_secs),
        stream_ids,
    })
    .context("building the auth callback client")?;
    tracing::info!(url = %http.loggable_url(), timeout_ms = config.auth.timeout_ms, cache_ttl_secs = config.auth.cache_ttl_secs, "publishes are authorised by the external control plane");
    Ok(Arc::new(http))
}

/// Picks up playback keys added or deleted by the CLI (another process);
/// the admin API reloads at once after its own changes.
async fn reload_playback_keys(tokens: PlaybackTokens, store: SqliteStore) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = tokens.reload(&store).await {
            tracing::warn!(error = %e, "reloading playback keys failed; keeping the previous set");
        }
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

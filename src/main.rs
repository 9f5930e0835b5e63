//! `pulse-edge`: RTMP in, encrypted LL-HLS ladder out.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use pulse_edge::config::Config;
use pulse_edge::control::{self, EventBus, PlaybackTokens, PublishController, PublishSettings, Store};
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
    Serve,
    /// Manage streams.
    Stream {
        #[command(subcommand)]
        command: StreamCommand,
    },
    /// Print a signed master playlist URL for a stream.
    Token {
        #[arg(long)]
        stream: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
}

#[derive(Subcommand)]
enum StreamCommand {
    /// Create a stream; prints one JSON object with its key (shown only now).
    Create {
        #[arg(long)]
        name: String,
        /// Ladder profile (a file in the pipelines directory, without .toml).
        #[arg(long)]
        profile: Option<String>,
    },
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
            Command::Serve => serve(config).await,
            Command::Stream {
                command: StreamCommand::Create { name, profile },
            } => create_stream(&config, &name, profile.as_deref()).await,
            Command::Token { stream, ttl } => print_token(&config, &stream, ttl).await,
        }
    })
}

fn playback_url(config: &Config, tokens: &PlaybackTokens, stream_id: &str, ttl: Duration) -> anyhow::Result<String> {
    let token = tokens.mint(stream_id, ttl, None)?;
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

async fn open_store(config: &Config) -> anyhow::Result<Store> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    Ok(Store::open(&config.db_path()).await?)
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

async fn create_stream(config: &Config, name: &str, profile: Option<&str>) -> anyhow::Result<()> {
    if let Some(profile) = profile {
        check_profile(config, profile)?;
    }
    let store = open_store(config).await?;
    let tokens = tokens_for(config)?;
    let (stream, key) = store.create_stream(name, profile).await?;
    let ttl = Duration::from_secs(config.playback.default_token_ttl_secs);
    let out = serde_json::json!({
        "id": stream.id,
        "name": stream.name,
        "profile": stream.profile,
        "stream_key": key,
        "rtmp_url": config.public_rtmp_base(),
        "playback_url": playback_url(config, &tokens, &stream.id, ttl)?,
    });
    println!("{out}");
    store.close().await;
    Ok(())
}

async fn print_token(config: &Config, stream_id: &str, ttl: u64) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    if store.stream(stream_id).await?.is_none() {
        bail!("no stream with id {stream_id:?}");
    }
    store.close().await;
    println!(
        "{}",
        playback_url(config, &tokens_for(config)?, stream_id, Duration::from_secs(ttl))?
    );
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
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
    let store = open_store(&config).await?;
    let tokens = tokens_for(&config)?;
    let events = EventBus::default();
    tokio::spawn(control::events::log_events(events.subscribe()));

    let part_target = Duration::from_millis(config.hls.part_target_ms);
    let segment_target = Duration::from_millis(config.hls.segment_target_ms);
    let object_store = Arc::new(storage::FsStore::new(config.media_dir()));
    let packagers = hls::Packagers::new(
        hls::HlsSettings {
            part_target,
            segment_target,
            window_segments: config.hls.window_segments,
            key_rotation_segments: config.hls.key_rotation_segments,
            encrypt: config.hls.encrypt,
            ..hls::HlsSettings::default()
        },
        object_store,
    );
    let controller = PublishController::new(
        store.clone(),
        packagers.clone(),
        Arc::new(profiles),
        PublishSettings {
            default_profile: config.default_profile.clone(),
            ladder: media::LadderSettings {
                part_target,
                segment_target,
                timeline_offset: Duration::ZERO,
            },
            reconnect_window: Duration::from_secs(config.reconnect_window_secs),
        },
        events.clone(),
    );

    let shutdown = CancellationToken::new();
    let rtmp = ingest::rtmp::RtmpServer::bind(
        ingest::rtmp::RtmpSettings {
            listen: config.rtmp.listen,
            chunk_size: config.rtmp.chunk_size,
            ..ingest::rtmp::RtmpSettings::default()
        },
        Arc::new(controller.clone()),
    )
    .await
    .with_context(|| format!("binding RTMP on {}", config.rtmp.listen))?;
    let http = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding HTTP on {}", config.http.listen))?;
    tracing::info!(rtmp = %rtmp.local_addr(), http = %config.http.listen, "pulse-edge listening");

    if store.count_streams().await? == 0 {
        let (stream, key) = store.create_stream("demo", None).await?;
        let url = playback_url(
            &config,
            &tokens,
            &stream.id,
            Duration::from_secs(config.playback.default_token_ttl_secs),
        )?;
        let rtmp_url = config.public_rtmp_base();
        println!("\nCreated a demo stream (the key is shown only this once):");
        println!("  RTMP URL:     {rtmp_url}");
        println!("  Stream key:   {key}");
        println!("  Playback URL: {url}");
        println!("  Try: ffmpeg -re -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine -c:v libx264 -preset veryfast -tune zerolatency -g 60 -c:a aac -f flv {rtmp_url}/{key}\n");
    } else {
        println!(
            "\npulse-edge is up: RTMP {}  HTTP {}",
            config.public_rtmp_base(),
            config.public_http_base()
        );
        println!("  New stream:   pulse-edge stream create --name NAME   (prints its key and playback URL)\n");
    }

    let rtmp_task = tokio::spawn(rtmp.serve(shutdown.clone()));
    let app = delivery::router(delivery::PlaybackService::new(packagers, tokens));
    let http_shutdown = shutdown.clone();
    let http_task = tokio::spawn(async move {
        axum::serve(http, app.into_make_service())
            .with_graceful_shutdown(http_shutdown.cancelled_owned())
            .await
    });

    wait_for_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    controller.kick_all();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = rtmp_task.await;
        let _ = http_task.await;
    })
    .await;
    store.close().await;
    Ok(())
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

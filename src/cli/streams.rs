//! `pulse-edge stream …` and `pulse-edge token`.

use std::time::Duration;

use clap::Subcommand;

use pulse_edge::control::model::{NewStream, Stream, StreamPatch, DEFAULT_APP_ID};
use pulse_edge::control::ControlStore;

use super::{live_publisher_hint, not_found, print_json, Audit, Ctx};

#[derive(Subcommand)]
pub enum StreamCommand {
    /// Create a stream; prints one JSON object with its key (shown only now).
    Create {
        #[arg(long)]
        name: String,
        /// The app (id or name); the default app when absent.
        #[arg(long)]
        app: Option<String>,
        /// Ladder profile (a file in the pipelines directory, without .toml).
        #[arg(long)]
        profile: Option<String>,
    },
    /// List streams, all or those of one app. Keys show as their prefix only.
    List {
        /// The app (id or name).
        #[arg(long)]
        app: Option<String>,
    },
    /// Show one stream.
    Show { id: String },
    /// Give a stream a new key (shown only now); the old one stops working at once.
    RotateKey { id: String },
    /// Refuse new publishes of a stream.
    Disable { id: String },
    /// Accept publishes of a stream again.
    Enable { id: String },
    /// Delete a stream and its key.
    Delete { id: String },
}

pub(super) async fn run(ctx: &Ctx<'_>, command: StreamCommand) -> anyhow::Result<()> {
    match command {
        StreamCommand::Create { name, app, profile } => create(ctx, name, app, profile).await,
        StreamCommand::List { app } => {
            let app_id = match app {
                Some(app) => Some(ctx.resolve_app(&app).await?.id),
                None => None,
            };
            print_json(&ctx.store.list_streams(app_id.as_deref()).await?)
        }
        StreamCommand::Show { id } => print_json(&existing(ctx, &id).await?),
        StreamCommand::RotateKey { id } => {
            let mut audit = Audit::new("stream.rotate_key", format!("stream/{id}"), None);
            let outcome = async {
                let stream = existing(ctx, &id).await?;
                audit.on(format!("stream/{id}"), Some(&stream.app_id));
                let Some((stream, key)) = ctx.store.rotate_stream_key(&id).await? else {
                    return Err(no_stream(&id));
                };
                live_publisher_hint("rotating a key");
                print_json(&serde_json::json!({
                    "id": stream.id,
                    "app_id": stream.app_id,
                    "name": stream.name,
                    "key_prefix": stream.key_prefix,
                    "stream_key": key,
                    "rtmp_url": ctx.config.public_rtmp_base(),
                }))
            }
            .await;
            ctx.record(audit, &outcome).await;
            outcome
        }
        StreamCommand::Disable { id } => set_enabled(ctx, &id, false).await,
        StreamCommand::Enable { id } => set_enabled(ctx, &id, true).await,
        StreamCommand::Delete { id } => {
            let mut audit = Audit::new("stream.delete", format!("stream/{id}"), None);
            let outcome = async {
                let stream = existing(ctx, &id).await?;
                audit.on(format!("stream/{id}"), Some(&stream.app_id));
                if !ctx.store.delete_stream(&id).await? {
                    return Err(no_stream(&id));
                }
                live_publisher_hint("deleting a stream");
                print_json(&serde_json::json!({ "deleted": id }))
            }
            .await;
            ctx.record(audit, &outcome).await;
            outcome
        }
    }
}

async fn create(ctx: &Ctx<'_>, name: String, app: Option<String>, profile: Option<String>) -> anyhow::Result<()> {
    let mut audit = Audit::new("stream.create", "stream", None);
    let outcome = async {
        let app_id = match &app {
            Some(app) => ctx.resolve_app(app).await?.id,
            None => DEFAULT_APP_ID.to_owned(),
        };
        audit.on("stream", Some(&app_id));
        if let Some(profile) = &profile {
            ctx.check_profile(profile)?;
        }
        let (stream, key) = ctx.store.create_stream(&app_id, NewStream { name, profile }).await?;
        audit.on(format!("stream/{}", stream.id), Some(&app_id));
        let tokens = ctx.tokens().await?;
        let ttl = Duration::from_secs(ctx.config.playback.default_token_ttl_secs);
        print_json(&serde_json::json!({
            "id": stream.id,
            "app_id": stream.app_id,
            "name": stream.name,
            "profile": stream.profile,
            "stream_key": key,
            "rtmp_url": ctx.config.public_rtmp_base(),
            "playback_url": crate::playback_url(ctx.config, &tokens, &stream.app_id, &stream.id, ttl)?,
        }))
    }
    .await;
    ctx.record(audit, &outcome).await;
    outcome
}

async fn set_enabled(ctx: &Ctx<'_>, id: &str, enabled: bool) -> anyhow::Result<()> {
    let action = if enabled { "stream.enable" } else { "stream.disable" };
    let mut audit = Audit::new(action, format!("stream/{id}"), None);
    let outcome = async {
        let stream = existing(ctx, id).await?;
        audit.on(format!("stream/{id}"), Some(&stream.app_id));
        let patch = StreamPatch {
            enabled: Some(enabled),
            ..StreamPatch::default()
        };
        let Some(stream) = ctx.store.update_stream(id, patch).await? else {
            return Err(no_stream(id));
        };
        if !enabled {
            live_publisher_hint("disabling a stream");
        }
        print_json(&stream)
    }
    .await;
    ctx.record(audit, &outcome).await;
    outcome
}

async fn existing(ctx: &Ctx<'_>, id: &str) -> anyhow::Result<Stream> {
    ctx.store.stream(id).await?.ok_or_else(|| no_stream(id))
}

fn no_stream(id: &str) -> anyhow::Error {
    not_found(format!("no stream with id {id:?}"))
}

pub(super) async fn print_token(ctx: &Ctx<'_>, stream_id: &str, ttl: u64) -> anyhow::Result<()> {
    let stream = existing(ctx, stream_id).await?;
    let tokens = ctx.tokens().await?;
    println!(
        "{}",
        crate::playback_url(
            ctx.config,
            &tokens,
            &stream.app_id,
            &stream.id,
            Duration::from_secs(ttl)
        )?
    );
    Ok(())
}

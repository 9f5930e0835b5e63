//! `pulse-edge app …`

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use pulse_edge::control::model::NewApp;
use pulse_edge::control::ControlStore;

use super::{live_publisher_hint, not_found, print_json, Audit, Ctx};

#[derive(Subcommand)]
pub enum AppCommand {
    /// Create an app; prints it as JSON.
    Create {
        /// 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'; unique.
        #[arg(long)]
        name: String,
        /// Ladder profile for the app's streams that name none (a file in the pipelines directory, without .toml).
        #[arg(long)]
        profile: Option<String>,
        /// A ladder of the app's own: a TOML file like those in the pipelines directory. Wins over --profile.
        #[arg(long, value_name = "FILE")]
        ladder: Option<PathBuf>,
        /// Serve the app's streams without AES-128 encryption.
        #[arg(long)]
        no_encrypt: bool,
        /// A new content key every N segments.
        #[arg(long, value_name = "N")]
        key_rotation_segments: Option<u64>,
        /// Record the app's streams.
        #[arg(long)]
        record: bool,
        /// The app's own bucket on the server's S3 endpoint (default: the server's store).
        #[arg(long, value_name = "BUCKET")]
        storage_bucket: Option<String>,
        /// Key prefix inside the bucket (default: the server's storage.prefix).
        #[arg(long, value_name = "PREFIX")]
        storage_prefix: Option<String>,
        /// CDN mode: playlists point media URIs at URL/<stream>/<rendition>/ (the bucket or a CDN in front of it).
        #[arg(long, value_name = "URL")]
        cdn_base_url: Option<String>,
        /// Concurrent live streams allowed (default: unlimited).
        #[arg(long, value_name = "N")]
        max_streams: Option<u32>,
        /// Ingest bitrate allowed per stream, in kbit/s (default: unlimited).
        #[arg(long, value_name = "N")]
        max_ingest_kbps: Option<u32>,
    },
    /// List apps.
    List,
    /// Show one app (by id or name).
    Show { app: String },
    /// Delete an app with its streams, playback keys and admin tokens.
    Delete { app: String },
}

pub(super) async fn run(ctx: &Ctx<'_>, command: AppCommand) -> anyhow::Result<()> {
    match command {
        AppCommand::Create {
            name,
            profile,
            ladder,
            no_encrypt,
            key_rotation_segments,
            record,
            storage_bucket,
            storage_prefix,
            cdn_base_url,
            max_streams,
            max_ingest_kbps,
        } => {
            let mut audit = Audit::new("app.create", "app", None);
            let outcome = async {
                if let Some(profile) = &profile {
                    ctx.check_profile(profile)?;
                }
                let custom_ladder = ladder
                    .map(|path| {
                        std::fs::read_to_string(&path).with_context(|| format!("reading ladder {}", path.display()))
                    })
                    .transpose()?;
                let app = ctx
                    .store
                    .create_app(NewApp {
                        name,
                        profile,
                        custom_ladder,
                        encrypt: Some(!no_encrypt),
                        key_rotation_segments,
                        record: Some(record),
                        storage_bucket,
                        storage_prefix,
                        cdn_base_url,
                        max_streams,
                        max_ingest_kbps,
                    })
                    .await?;
                audit.on(format!("app/{}", app.id), Some(&app.id));
                print_json(&app)
            }
            .await;
            ctx.record(audit, &outcome).await;
            outcome
        }
        AppCommand::List => print_json(&ctx.store.list_apps().await?),
        AppCommand::Show { app } => print_json(&ctx.resolve_app(&app).await?),
        AppCommand::Delete { app } => {
            let mut audit = Audit::new("app.delete", format!("app/{app}"), None);
            let outcome = async {
                let found = ctx.resolve_app(&app).await?;
                audit.on(format!("app/{}", found.id), Some(&found.id));
                if !ctx.store.delete_app(&found.id).await? {
                    return Err(not_found(format!("no app with id {:?}", found.id)));
                }
                live_publisher_hint("deleting an app");
                print_json(&serde_json::json!({ "deleted": found.id }))
            }
            .await;
            ctx.record(audit, &outcome).await;
            outcome
        }
    }
}

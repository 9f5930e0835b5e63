//! `pulse-edge source …`: RTSP pull sources, as the admin API manages them.
//! The running server picks changes up within seconds (it reconciles with
//! the store); the state shown is the one it last recorded.

use std::sync::Arc;

use clap::Subcommand;

use pulse_edge::control::sources::model::NewSource;
use pulse_edge::control::sources::Sources;
use pulse_edge::ingest::rtsp::PullTransport;

use super::{not_found, print_json, Audit, Ctx};

#[derive(Subcommand)]
pub enum SourceCommand {
    /// Register a camera: `--url rtsp://user:password@host/path` (never shown again).
    Add {
        #[arg(long)]
        name: String,
        #[arg(long)]
        url: String,
        /// App id or name (default: the default app).
        #[arg(long)]
        app: Option<String>,
        /// tcp (default) or udp.
        #[arg(long, default_value = "tcp")]
        transport: String,
        /// Ladder profile (a file in the pipelines directory, without .toml).
        #[arg(long)]
        profile: Option<String>,
    },
    /// List the sources of an app, or of all apps.
    List {
        #[arg(long)]
        app: Option<String>,
    },
    Show {
        id: String,
    },
    /// Pull again (also after a takeover stopped it).
    Start {
        id: String,
    },
    Stop {
        id: String,
    },
    /// Delete the source and the stream made for it.
    Delete {
        id: String,
    },
}

fn sources(ctx: &Ctx<'_>) -> Sources {
    Sources::new(Arc::new(ctx.store.clone()), Arc::new(ctx.store.clone()))
}

async fn app_of(ctx: &Ctx<'_>, id: &str) -> anyhow::Result<String> {
    let source = sources(ctx)
        .find(id)
        .await?
        .ok_or_else(|| not_found(format!("no source with id {id:?}")))?;
    Ok(source.app_id)
}

pub(super) async fn run(ctx: &Ctx<'_>, command: SourceCommand) -> anyhow::Result<()> {
    let all = sources(ctx);
    match command {
        SourceCommand::Add {
            name,
            url,
            app,
            transport,
            profile,
        } => {
            let mut audit = Audit::new("source.create", "source", None);
            let outcome = async {
                let app = ctx
                    .resolve_app(app.as_deref().unwrap_or(pulse_edge::control::model::DEFAULT_APP_ID))
                    .await?;
                audit.on("source", Some(&app.id));
                if let Some(profile) = &profile {
                    ctx.check_profile(profile)?;
                }
                let transport = match transport.as_str() {
                    "tcp" => PullTransport::Tcp,
                    "udp" => PullTransport::Udp,
                    other => anyhow::bail!("--transport must be tcp or udp, not {other:?}"),
                };
                let source = all
                    .create(
                        &app.id,
                        NewSource {
                            name,
                            url: url.into(),
                            transport,
                            profile,
                        },
                    )
                    .await?;
                audit.on(format!("source/{}", source.id), Some(&app.id));
                print_json(&source.view())
            }
            .await;
            ctx.record(audit, &outcome).await;
            outcome
        }
        SourceCommand::List { app } => {
            let app_id = match app {
                Some(app) => Some(ctx.resolve_app(&app).await?.id),
                None => None,
            };
            let views: Vec<_> = all.list(app_id.as_deref()).await?.iter().map(|s| s.view()).collect();
            print_json(&views)
        }
        SourceCommand::Show { id } => {
            let source = all
                .find(&id)
                .await?
                .ok_or_else(|| not_found(format!("no source with id {id:?}")))?;
            print_json(&source.view())
        }
        SourceCommand::Start { id } => switch(ctx, &all, id, true).await,
        SourceCommand::Stop { id } => switch(ctx, &all, id, false).await,
        SourceCommand::Delete { id } => {
            let mut audit = Audit::new("source.delete", format!("source/{id}"), None);
            let outcome = async {
                let app_id = app_of(ctx, &id).await?;
                audit.on(format!("source/{id}"), Some(&app_id));
                all.delete(&app_id, &id).await?;
                print_json(&serde_json::json!({ "deleted": id }))
            }
            .await;
            ctx.record(audit, &outcome).await;
            outcome
        }
    }
}

async fn switch(ctx: &Ctx<'_>, all: &Sources, id: String, enabled: bool) -> anyhow::Result<()> {
    let action = if enabled { "source.start" } else { "source.stop" };
    let mut audit = Audit::new(action, format!("source/{id}"), None);
    let outcome = async {
        let app_id = app_of(ctx, &id).await?;
        audit.on(format!("source/{id}"), Some(&app_id));
        let source = all
            .set_enabled(&app_id, &id, enabled)
            .await?
            .ok_or_else(|| not_found(format!("no source with id {id:?}")))?;
        print_json(&source.view())
    }
    .await;
    ctx.record(audit, &outcome).await;
    outcome
}

//! `pulse-edge recording …`: the admin API's recordings operations.

use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;
use serde::Serialize;

use pulse_edge::control::recordings::model::{Recording, STATUS_READY};
use pulse_edge::control::recordings::{Recorder, RecorderSettings};

use super::{not_found, print_json, Audit, Ctx};

#[derive(Subcommand)]
pub enum RecordingCommand {
    /// List an app's recordings (id or name), newest first.
    List {
        #[arg(long)]
        app: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show one recording with a playback URL.
    Show {
        id: String,
        /// Lifetime of the playback URL in seconds.
        #[arg(long, default_value_t = 86400)]
        ttl: u64,
    },
    /// Delete a finished recording and its objects (segments, inits, playlists).
    Delete { id: String },
}

#[derive(Serialize)]
struct RecordingView {
    #[serde(flatten)]
    recording: Recording,
    playback_url: Option<String>,
}

/// The server's recorder over the local store and the configured media store
/// (an S3 bucket is checked first, as the server does).
async fn recorder(ctx: &Ctx<'_>) -> anyhow::Result<Recorder> {
    let stores = crate::open_media_stores(ctx.config).await?;
    Ok(Recorder::new(
        Arc::new(ctx.store.clone()),
        Arc::new(ctx.store.clone()),
        stores,
        ctx.tokens().await?,
        RecorderSettings {
            public_http_base: ctx.config.public_http_base(),
            settle_timeout: Duration::from_secs(ctx.config.recordings.settle_timeout_secs),
        },
    ))
}

fn view(recorder: &Recorder, recording: Recording, ttl: Duration) -> RecordingView {
    let playback_url = (recording.status == STATUS_READY)
        .then(|| recorder.playback_url(&recording, ttl))
        .flatten();
    RecordingView {
        recording,
        playback_url,
    }
}

pub(super) async fn run(ctx: &Ctx<'_>, command: RecordingCommand) -> anyhow::Result<()> {
    let recorder = recorder(ctx).await?;
    match command {
        RecordingCommand::List { app, limit } => {
            let app = ctx.resolve_app(&app).await?;
            let ttl = Duration::from_secs(ctx.config.playback.default_token_ttl_secs);
            let views: Vec<RecordingView> = recorder
                .list(&app.id, limit.clamp(1, 1000))
                .await?
                .into_iter()
                .map(|r| view(&recorder, r, ttl))
                .collect();
            print_json(&views)
        }
        RecordingCommand::Show { id, ttl } => {
            let recording = recorder
                .get(&id)
                .await?
                .ok_or_else(|| not_found(format!("no recording with id {id:?}")))?;
            print_json(&view(&recorder, recording, Duration::from_secs(ttl)))
        }
        RecordingCommand::Delete { id } => {
            let mut audit = Audit::new("recording.delete", format!("recording/{id}"), None);
            let outcome = async {
                let recording = recorder
                    .get(&id)
                    .await?
                    .ok_or_else(|| not_found(format!("no recording with id {id:?}")))?;
                audit.on(format!("recording/{id}"), Some(&recording.app_id));
                recorder.delete(&recording).await?;
                print_json(&serde_json::json!({ "deleted": id }))
            }
            .await;
            ctx.record(audit, &outcome).await;
            outcome
        }
    }
}

//! The operator's command line against the local store: apps, streams,
//! playback tokens and keys, admin tokens, recordings, the audit log. Every command
//! prints JSON on stdout; every mutation is audited with actor `cli`.
//!
//! The CLI is another process than the server: it cannot disconnect a live
//! publisher. Commands that would (disable, rotate, delete) say so on stderr
//! and name the admin API, which does.

mod apps;
mod audit;
pub mod demo;
mod keys;
mod recordings;
mod sources;
mod streams;

use anyhow::Context;
use clap::Subcommand;
use serde::Serialize;

use pulse_edge::config::Config;
use pulse_edge::control::model::{App, AuditRecord};
use pulse_edge::control::recordings::RecordingError;
use pulse_edge::control::sources::SourceError;
use pulse_edge::control::{ControlStore, PlaybackTokens, SqliteStore, StoreError};

pub use apps::AppCommand;
pub use audit::AuditArgs;
pub use keys::{AdminTokenCommand, PlaybackKeyCommand};
pub use recordings::RecordingCommand;
pub use sources::SourceCommand;
pub use streams::StreamCommand;

/// The commands that work on the local store (everything but `serve`).
#[derive(Subcommand)]
pub enum LocalCommand {
    /// Manage apps (tenants).
    App {
        #[command(subcommand)]
        command: AppCommand,
    },
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
    /// Manage an app's playback signing keys.
    PlaybackKey {
        #[command(subcommand)]
        command: PlaybackKeyCommand,
    },
    /// Manage admin API bearer tokens.
    AdminToken {
        #[command(subcommand)]
        command: AdminTokenCommand,
    },
    /// Recordings: list, show, delete.
    Recording {
        #[command(subcommand)]
        command: RecordingCommand,
    },
    /// RTSP pull sources (cameras): add, list, show, start, stop, delete.
    Source {
        #[command(subcommand)]
        command: SourceCommand,
    },
    /// Print audit records, newest first.
    Audit(AuditArgs),
}

pub async fn run(config: &Config, command: LocalCommand) -> anyhow::Result<()> {
    let ctx = Ctx {
        config,
        store: crate::open_store(config).await?,
    };
    let result = match command {
        LocalCommand::App { command } => apps::run(&ctx, command).await,
        LocalCommand::Stream { command } => streams::run(&ctx, command).await,
        LocalCommand::Token { stream, ttl } => streams::print_token(&ctx, &stream, ttl).await,
        LocalCommand::PlaybackKey { command } => keys::run_playback_key(&ctx, command).await,
        LocalCommand::AdminToken { command } => keys::run_admin_token(&ctx, command).await,
        LocalCommand::Recording { command } => recordings::run(&ctx, command).await,
        LocalCommand::Source { command } => sources::run(&ctx, command).await,
        LocalCommand::Audit(args) => audit::run(&ctx, args).await,
    };
    ctx.store.close().await;
    result
}

struct Ctx<'a> {
    config: &'a Config,
    store: SqliteStore,
}

impl Ctx<'_> {
    /// An app by id, else by name.
    async fn resolve_app(&self, id_or_name: &str) -> anyhow::Result<App> {
        if let Some(app) = self.store.app(id_or_name).await? {
            return Ok(app);
        }
        match self.store.app_by_name(id_or_name).await? {
            Some(app) => Ok(app),
            None => Err(not_found(format!("no app with id or name {id_or_name:?}"))),
        }
    }

    /// The playback tokens as the server mints them: the data dir's key,
    /// and the apps' own HS256 keys from the store.
    async fn tokens(&self) -> anyhow::Result<PlaybackTokens> {
        let tokens = crate::tokens_for(self.config)?;
        tokens
            .reload(&self.store)
            .await
            .context("loading the apps' playback keys")?;
        Ok(tokens)
    }

    fn check_profile(&self, profile: &str) -> anyhow::Result<()> {
        crate::check_profile(self.config, profile)
    }

    /// Appends the audit record of a mutation, whatever its outcome. A
    /// failure to record is reported but does not undo or fail the mutation:
    /// a retried create would make a second one.
    async fn record(&self, audit: Audit, outcome: &anyhow::Result<()>) {
        let result = match outcome {
            Ok(()) => "ok".to_owned(),
            Err(e) => format!("error: {} {e:#}", status_of(e)),
        };
        let record = AuditRecord {
            actor: "cli".into(),
            ip: None,
            action: audit.action.into(),
            target: audit.target,
            app_id: audit.app_id,
            result,
        };
        if let Err(e) = self.store.append_audit(record).await {
            eprintln!("pulse-edge: warning: the change is made but its audit record was not written: {e}");
        }
    }
}

/// What a mutation is recorded as; the target is refined once known.
struct Audit {
    action: &'static str,
    target: String,
    app_id: Option<String>,
}

impl Audit {
    fn new(action: &'static str, target: impl Into<String>, app_id: Option<&str>) -> Self {
        Self {
            action,
            target: target.into(),
            app_id: app_id.map(Into::into),
        }
    }

    fn on(&mut self, target: impl Into<String>, app_id: Option<&str>) {
        self.target = target.into();
        self.app_id = app_id.map(Into::into);
    }
}

/// The HTTP status the admin API answers for the same failure, so that one
/// audit filter finds both.
fn status_of(e: &anyhow::Error) -> u16 {
    match e.downcast_ref::<StoreError>() {
        Some(StoreError::NotFound(_)) => 404,
        Some(StoreError::Conflict(_)) => 409,
        Some(StoreError::Invalid(_)) => 400,
        Some(_) => 500,
        None if e.downcast_ref::<NotFound>().is_some() => 404,
        None if matches!(e.downcast_ref::<SourceError>(), Some(SourceError::NoApp(_))) => 404,
        None => match e.downcast_ref::<RecordingError>() {
            Some(RecordingError::StillRecording(_)) => 409,
            Some(RecordingError::Storage { .. }) => 503,
            Some(RecordingError::Store(_)) => 500,
            None => 400,
        },
    }
}

/// A record named on the command line that does not exist.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct NotFound(String);

fn not_found(message: String) -> anyhow::Error {
    NotFound(message).into()
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

/// The CLI cannot reach the running server's publishers.
fn live_publisher_hint(what: &str) {
    eprintln!(
        "pulse-edge: note: {what} does not disconnect a publisher that is live now (the CLI is not the server); \
         the same change through the admin API does"
    );
}

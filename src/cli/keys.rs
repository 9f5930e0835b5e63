//! `pulse-edge playback-key …` and `pulse-edge admin-token …`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Subcommand;

use pulse_edge::control::model::{KeyAlgorithm, NewAdminToken, NewPlaybackKey};
use pulse_edge::control::ControlStore;

use super::{not_found, print_json, Audit, Ctx};

#[derive(Subcommand)]
pub enum PlaybackKeyCommand {
    /// Add a key. HS256: the server generates the secret and prints it (only now);
    /// RS256/ES256: give the app's public key, the app signs with its private key.
    Create {
        /// The app (id or name).
        #[arg(long)]
        app: String,
        /// HS256, RS256 or ES256.
        #[arg(long)]
        alg: String,
        /// PEM file of the public key (RS256: RSA 2048 to 8192 bits; ES256: P-256).
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
    },
    /// List an app's keys (never the HS256 secrets).
    List {
        #[arg(long)]
        app: String,
    },
    /// Delete a key: tokens it signed stop working.
    Delete {
        #[arg(long)]
        app: String,
        kid: String,
    },
}

#[derive(Subcommand)]
pub enum AdminTokenCommand {
    /// Create a bearer token for the admin API; prints its secret (only now).
    Create {
        #[arg(long)]
        name: String,
        /// Scope the token to one app (id or name); global when absent.
        #[arg(long)]
        app: Option<String>,
    },
    /// List tokens (never their secrets).
    List {
        /// Only the tokens scoped to this app (id or name).
        #[arg(long)]
        app: Option<String>,
    },
    /// Revoke a token: it stops working at once.
    Revoke { id: String },
}

pub(super) async fn run_playback_key(ctx: &Ctx<'_>, command: PlaybackKeyCommand) -> anyhow::Result<()> {
    match command {
        PlaybackKeyCommand::Create { app, alg, public_key } => {
            let mut audit = Audit::new("playback_key.create", "playback_key", None);
            let outcome = async {
                let app = ctx.resolve_app(&app).await?;
                audit.on("playback_key", Some(&app.id));
                let Some(algorithm) = KeyAlgorithm::parse(&alg) else {
                    bail!("unknown algorithm {alg:?}; use HS256, RS256 or ES256");
                };
                let public_key_pem = public_key
                    .map(|path| {
                        std::fs::read_to_string(&path).with_context(|| format!("reading public key {}", path.display()))
                    })
                    .transpose()?;
                let (key, secret) = ctx
                    .store
                    .create_playback_key(
                        &app.id,
                        NewPlaybackKey {
                            algorithm,
                            public_key_pem,
                        },
                    )
                    .await?;
                audit.on(format!("playback_key/{}", key.kid), Some(&app.id));
                let mut out = serde_json::to_value(&key)?;
                if let (Some(secret), Some(fields)) = (secret, out.as_object_mut()) {
                    fields.insert("secret".into(), secret.into());
                }
                print_json(&out)
            }
            .await;
            ctx.record(audit, &outcome).await;
            outcome
        }
        PlaybackKeyCommand::List { app } => {
            let app = ctx.resolve_app(&app).await?;
            print_json(&ctx.store.list_playback_keys(&app.id).await?)
        }
        PlaybackKeyCommand::Delete { app, kid } => {
            let mut audit = Audit::new("playback_key.delete", format!("playback_key/{kid}"), None);
            let outcome = async {
                let app = ctx.resolve_app(&app).await?;
                audit.on(format!("playback_key/{kid}"), Some(&app.id));
                if !ctx.store.delete_playback_key(&app.id, &kid).await? {
                    return Err(not_found(format!("app {:?} has no playback key {kid:?}", app.id)));
                }
                print_json(&serde_json::json!({ "deleted": kid }))
            }
            .await;
            ctx.record(audit, &outcome).await;
            outcome
        }
    }
}

pub(super) async fn run_admin_token(ctx: &Ctx<'_>, command: AdminTokenCommand) -> anyhow::Result<()> {
    match command {
        AdminTokenCommand::Create { name, app } => {
            let mut audit = Audit::new("admin_token.create", "admin_token", None);
            let outcome = async {
                let app_id = match &app {
                    Some(app) => Some(ctx.resolve_app(app).await?.id),
                    None => None,
                };
                audit.on("admin_token", app_id.as_deref());
                let (token, secret) = ctx.store.create_admin_token(NewAdminToken { name, app_id }).await?;
                audit.on(format!("admin_token/{}", token.id), token.app_id.as_deref());
                let mut out = serde_json::to_value(&token)?;
                if let Some(fields) = out.as_object_mut() {
                    fields.insert("secret".into(), secret.into());
                }
                print_json(&out)
            }
            .await;
            ctx.record(audit, &outcome).await;
            outcome
        }
        AdminTokenCommand::List { app } => {
            let app_id = match app {
                Some(app) => Some(ctx.resolve_app(&app).await?.id),
                None => None,
            };
            print_json(&ctx.store.list_admin_tokens(app_id.as_deref()).await?)
        }
        AdminTokenCommand::Revoke { id } => {
            let mut audit = Audit::new("admin_token.revoke", format!("admin_token/{id}"), None);
            let outcome = async {
                let tokens = ctx.store.list_admin_tokens(None).await?;
                let Some(token) = tokens.into_iter().find(|t| t.id == id) else {
                    return Err(not_found(format!("no admin token with id {id:?}")));
                };
                audit.on(format!("admin_token/{id}"), token.app_id.as_deref());
                if !ctx.store.revoke_admin_token(&id).await? {
                    return Err(not_found(format!("no admin token with id {id:?}")));
                }
                print_json(&serde_json::json!({ "revoked": id }))
            }
            .await;
            ctx.record(audit, &outcome).await;
            outcome
        }
    }
}

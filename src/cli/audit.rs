//! `pulse-edge audit`

use clap::Args;

use pulse_edge::control::model::AuditFilter;
use pulse_edge::control::ControlStore;

use super::{print_json, Ctx};

#[derive(Args)]
pub struct AuditArgs {
    /// Admin token id, or `cli`.
    #[arg(long)]
    actor: Option<String>,
    /// e.g. stream.create, app.delete.
    #[arg(long)]
    action: Option<String>,
    /// The app (id or name) the records concern.
    #[arg(long)]
    app: Option<String>,
    /// e.g. stream/st…
    #[arg(long)]
    target: Option<String>,
    /// `ok` or `error`.
    #[arg(long)]
    result: Option<String>,
    /// Unix time in milliseconds, inclusive.
    #[arg(long)]
    since_ms: Option<i64>,
    /// Unix time in milliseconds, inclusive.
    #[arg(long)]
    until_ms: Option<i64>,
    /// At most this many (default 100, at most 1000).
    #[arg(long)]
    limit: Option<u32>,
}

pub(super) async fn run(ctx: &Ctx<'_>, args: AuditArgs) -> anyhow::Result<()> {
    // A deleted app's records stay: an id that no longer resolves is used as given.
    let app_id = match args.app {
        Some(app) => Some(ctx.resolve_app(&app).await.map(|a| a.id).unwrap_or(app)),
        None => None,
    };
    let filter = AuditFilter {
        actor: args.actor,
        action: args.action,
        app_id,
        target: args.target,
        result: args.result,
        since_ms: args.since_ms,
        until_ms: args.until_ms,
        limit: args.limit,
    };
    print_json(&ctx.store.audit(&filter).await?)
}

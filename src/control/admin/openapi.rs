//! The OpenAPI document of `/api/v1`, generated from the handlers' and
//! bodies' annotations so that it cannot drift from the code.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};

use super::dto::*;
use super::error::ErrorBody;
use super::recordings::{self, RecordingView};
use super::routes;
use super::sources;
use super::usage;
use super::webhooks::dto::*;
use super::webhooks::routes as wh;
use crate::control::live::{AudioInput, LiveStreamStats, RenditionStats, VideoInput};
use crate::control::model::{AdminToken, App, AuditEntry, KeyAlgorithm, PlaybackKey, Stream};
use crate::control::recordings::model::Recording;
use crate::control::sources::model::{NewSource, SourceView};
use crate::control::usage::model::UsageRow;
use crate::control::viewers::ViewerCount;
use crate::control::webhooks::model::{Backlog, Delivery, DeliveryStatus, RecordedEvent, WebhookEndpoint};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("an admin token from `pulse-edge admin-token create`"))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Pulse Edge admin API", version = "1"),
    servers((url = "/api/v1")),
    paths(
        routes::list_apps, routes::create_app, routes::get_app, routes::update_app, routes::delete_app,
        routes::list_streams, routes::create_stream, routes::get_stream, routes::update_stream, routes::delete_stream,
        routes::rotate_key, routes::disable_stream, routes::enable_stream, routes::mint_token,
        routes::list_playback_keys, routes::create_playback_key, routes::delete_playback_key,
        routes::list_admin_tokens, routes::create_admin_token, routes::revoke_admin_token,
        routes::live, routes::live_stream, routes::kick, routes::audit, routes::audit_csv,
        wh::list_webhooks, wh::create_webhook, wh::get_webhook, wh::update_webhook, wh::delete_webhook,
        wh::rotate_webhook_secret, wh::test_webhook, wh::list_deliveries, wh::redeliver, wh::redeliver_failed,
        wh::list_events, usage::viewers, usage::usage, usage::usage_csv,
        recordings::list_recordings, recordings::get_recording, recordings::delete_recording,
        sources::create_source, sources::list_sources, sources::get_source, sources::start_source,
        sources::stop_source, sources::delete_source,
    ),
    components(schemas(
        App, Stream, PlaybackKey, AdminToken, AuditEntry, KeyAlgorithm, ErrorBody, CreateApp, UpdateApp, CreateStream,
        UpdateStream, StreamWithKey, CreatePlaybackKey, CreatedPlaybackKey, MintToken, MintedToken, CreateAdminToken,
        CreatedAdminToken, Kicked, LiveStreamStats, VideoInput, AudioInput, RenditionStats,
        WebhookView, WebhookWithSecret, CreateWebhook, UpdateWebhook, Redelivered, TestSent, WebhookEndpoint, Backlog,
        Delivery, DeliveryStatus, RecordedEvent, ViewerCount, UsageRow, RecordingView, Recording,
        NewSource, SourceView,
    )),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

pub fn document() -> Document {
    ApiDoc::openapi()
}

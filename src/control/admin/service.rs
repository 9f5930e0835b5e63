//! The admin API's rules, without HTTP: scoping (an app token sees and
//! touches only its app), validation, kicking live publishers, and an audit
//! record for every mutation, whether it succeeded or not.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::audit::{self, Attempt};
use super::auth::{AuthLog, Principal};
use super::dto::*;
use super::error::ApiError;
use crate::control::audience::Audience;
use crate::control::live::{LiveStreamStats, LiveStreams};
use crate::control::model::{
    AdminToken, App, AppPatch, AuditEntry, AuditFilter, AuditRecord, NewAdminToken, NewApp, NewPlaybackKey, NewStream,
    PlaybackKey, Stream, StreamPatch,
};
use crate::control::store::UsageStore;
use crate::control::webhooks::WebhookService;
use crate::control::{ControlStore, PlaybackTokens};
use crate::media::LadderProfile;

/// Decides readiness beyond the store (GStreamer's elements, …).
pub type ReadinessProbe = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

const DEFAULT_TOKEN_TTL: u64 = 3600;
const MAX_TOKEN_TTL: u64 = 30 * 24 * 3600;
const PLAYBACK_URL_TTL: Duration = Duration::from_secs(24 * 3600);
const AUDIT_MAX_LIMIT: u32 = 1000;

pub struct AdminSettings {
    pub public_http_base: String,
    pub public_rtmp_base: String,
    /// Larger request bodies get 413 (`admin.body_limit_bytes`).
    pub body_limit_bytes: usize,
}

#[derive(Clone)]
pub struct AdminService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ControlStore>,
    live: Arc<dyn LiveStreams>,
    tokens: PlaybackTokens,
    profiles: Arc<BTreeMap<String, LadderProfile>>,
    settings: AdminSettings,
    ready: ReadinessProbe,
    reporting: Reporting,
    auth_log: AuthLog,
    /// `/readyz` answers anyone: while the server is not ready, each probe
    /// would otherwise log its failure (store, then the verdict).
    store_down_log: parking_lot::Mutex<crate::logging::LogLimiter>,
    not_ready_log: parking_lot::Mutex<crate::logging::LogLimiter>,
}

/// What the admin API reports from: webhooks and events, viewers, usage.
pub struct Reporting {
    pub webhooks: Arc<WebhookService>,
    pub audience: Arc<Audience>,
    pub usage: Arc<dyn UsageStore>,
    /// `None`: no recordings here (the admin API answers 404 for them).
    pub recordings: Option<crate::control::recordings::Recorder>,
    /// `None`: no pull sources here (404).
    pub sources: Option<crate::control::sources::SourceRunner>,
}

/// Ids come from the URL; anything that cannot be one of ours is simply not found.
pub(super) fn plausible_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl AdminService {
    pub fn new(
        store: Arc<dyn ControlStore>,
        live: Arc<dyn LiveStreams>,
        tokens: PlaybackTokens,
        profiles: Arc<BTreeMap<String, LadderProfile>>,
        settings: AdminSettings,
        ready: ReadinessProbe,
        reporting: Reporting,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                live,
                tokens,
                profiles,
                settings,
                ready,
                reporting,
                auth_log: AuthLog::default(),
                store_down_log: Default::default(),
                not_ready_log: Default::default(),
            }),
        }
    }

    pub fn store(&self) -> &dyn ControlStore {
        &*self.inner.store
    }

    pub(super) fn auth_log(&self) -> &AuthLog {
        &self.inner.auth_log
    }

    pub(super) fn webhooks(&self) -> &WebhookService {
        &self.inner.reporting.webhooks
    }

    pub(super) fn audience(&self) -> &Audience {
        &self.inner.reporting.audience
    }

    pub(super) fn audience_counts(&self) -> tokio::sync::broadcast::Receiver<crate::control::viewers::ViewerCount> {
        self.inner.reporting.audience.counts()
    }

    pub(super) fn recordings(&self) -> Option<&crate::control::recordings::Recorder> {
        self.inner.reporting.recordings.as_ref()
    }

    pub(super) fn pull_sources(&self) -> Option<&crate::control::sources::SourceRunner> {
        self.inner.reporting.sources.as_ref()
    }

    pub(super) fn usage_store(&self) -> &dyn UsageStore {
        &*self.inner.reporting.usage
    }

    pub fn body_limit_bytes(&self) -> usize {
        self.inner.settings.body_limit_bytes
    }

    /// Every readiness check by name, in order. A store failure's detail
    /// goes to the log only: the probe answers anyone.
    pub async fn readiness(&self) -> Vec<(&'static str, Result<(), String>)> {
        let store = self.inner.store.ping().await.map_err(|e| {
            if let Some(suppressed) = self.inner.store_down_log.lock().allow() {
                tracing::error!(error = %e, suppressed, "readiness: the store does not answer");
            }
            "the store does not answer a query".to_owned()
        });
        vec![("store", store), ("media", (self.inner.ready)())]
    }

    /// `Some(suppressed)` when a "not ready" line may be written now.
    pub(super) fn not_ready_log(&self) -> Option<u64> {
        self.inner.not_ready_log.lock().allow()
    }

    pub(super) async fn audit<T>(
        &self,
        who: &Principal,
        attempt: Attempt,
        outcome: Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let result = match &outcome {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.audit_result(),
        };
        // An app token's records belong to its app, also when it aimed at
        // another one: its own log shows the attempt, the other app's log
        // learns nothing about who probed it.
        let app_id = match &who.app_id {
            Some(own) => Some(own.clone()),
            None => attempt.app_id,
        };
        let record = AuditRecord {
            actor: who.token_id.clone(),
            ip: who.ip.clone(),
            action: attempt.action.to_owned(),
            target: attempt.target,
            app_id,
            result,
        };
        if let Err(e) = self.inner.store.append_audit(record).await {
            // The mutation itself stands; losing its record is an operator alarm.
            tracing::error!(error = %e, action = attempt.action, "admin API: audit record not written");
        }
        outcome
    }

    /// A mutation refused before it reached the service (its body could not
    /// be read): audited like any other refusal after authentication.
    pub async fn refused<T>(&self, who: &Principal, attempt: Attempt, error: ApiError) -> Result<T, ApiError> {
        self.audit(who, attempt, Err(error)).await
    }

    pub(super) fn check_profile(&self, profile: Option<&str>) -> Result<(), ApiError> {
        match profile {
            Some(name) if !self.inner.profiles.contains_key(name) => {
                let known: Vec<&str> = self.inner.profiles.keys().map(String::as_str).collect();
                Err(ApiError::invalid(format!(
                    "unknown profile {name:?}; this server has {known:?}"
                )))
            }
            _ => Ok(()),
        }
    }

    /// The app, if the caller may see it.
    pub(super) async fn visible_app(&self, who: &Principal, app_id: &str) -> Result<App, ApiError> {
        if !plausible_id(app_id) || !who.may_see(app_id) {
            return Err(ApiError::not_found("app"));
        }
        self.inner
            .store
            .app(app_id)
            .await?
            .ok_or_else(|| ApiError::not_found("app"))
    }

    /// The stream, if it belongs to `app_id` and the caller may see that app.
    pub(super) async fn visible_stream(
        &self,
        who: &Principal,
        app_id: &str,
        stream_id: &str,
    ) -> Result<Stream, ApiError> {
        self.visible_app(who, app_id).await?;
        if !plausible_id(stream_id) {
            return Err(ApiError::not_found("stream"));
        }
        match self.inner.store.stream(stream_id).await? {
            Some(stream) if stream.app_id == app_id => Ok(stream),
            _ => Err(ApiError::not_found("stream")),
        }
    }

    fn sign(
        &self,
        app_id: &str,
        stream_id: &str,
        ttl: Duration,
        sid: Option<String>,
    ) -> Result<(String, String), ApiError> {
        let token = self
            .inner
            .tokens
            .mint_for_app(app_id, stream_id, ttl, sid)
            .map_err(|e| {
                tracing::error!(error = %e, "admin API: minting a playback token failed");
                ApiError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "could not sign a token",
                )
            })?;
        let url = format!(
            "{}/live/{stream_id}/master.m3u8?token={token}",
            self.inner.settings.public_http_base
        );
        Ok((token, url))
    }

    // ---- apps ----

    pub async fn list_apps(&self, who: &Principal) -> Result<Vec<App>, ApiError> {
        let apps = self.inner.store.list_apps().await?;
        Ok(apps.into_iter().filter(|a| who.may_see(&a.id)).collect())
    }

    pub async fn get_app(&self, who: &Principal, app_id: &str) -> Result<App, ApiError> {
        self.visible_app(who, app_id).await
    }

    pub async fn create_app(&self, who: &Principal, body: CreateApp) -> Result<App, ApiError> {
        let outcome = async {
            who.require_global()?;
            self.check_profile(body.profile.as_deref())?;
            Ok(self
                .inner
                .store
                .create_app(NewApp {
                    name: body.name,
                    profile: body.profile,
                    custom_ladder: body.custom_ladder,
                    encrypt: body.encrypt,
                    key_rotation_segments: body.key_rotation_segments,
                    record: body.record,
                    storage_bucket: body.storage_bucket,
                    storage_prefix: body.storage_prefix,
                    cdn_base_url: body.cdn_base_url,
                    max_streams: body.max_streams,
                    max_ingest_kbps: body.max_ingest_kbps,
                })
                .await?)
        }
        .await;
        let attempt = match &outcome {
            Ok(app) => Attempt::new(audit::APP_CREATE, format!("app/{}", app.id), Some(&app.id)),
            Err(_) => Attempt::new(audit::APP_CREATE, "app", None),
        };
        self.audit(who, attempt, outcome).await
    }

    pub async fn update_app(&self, who: &Principal, app_id: &str, body: UpdateApp) -> Result<App, ApiError> {
        let outcome = async {
            self.visible_app(who, app_id).await?;
            who.require_global()?;
            self.check_profile(body.profile.as_ref().and_then(|p| p.as_deref()))?;
            let patch = AppPatch {
                name: body.name,
                profile: body.profile,
                custom_ladder: body.custom_ladder,
                encrypt: body.encrypt,
                key_rotation_segments: body.key_rotation_segments,
                record: body.record,
                storage_bucket: body.storage_bucket,
                storage_prefix: body.storage_prefix,
                cdn_base_url: body.cdn_base_url,
                max_streams: body.max_streams,
                max_ingest_kbps: body.max_ingest_kbps,
            };
            self.inner
                .store
                .update_app(app_id, patch)
                .await?
                .ok_or_else(|| ApiError::not_found("app"))
        }
        .await;
        let attempt = Attempt::new(audit::APP_UPDATE, format!("app/{app_id}"), Some(app_id));
        self.audit(who, attempt, outcome).await
    }

    pub async fn delete_app(&self, who: &Principal, app_id: &str) -> Result<(), ApiError> {
        let outcome = async {
            self.visible_app(who, app_id).await?;
            who.require_global()?;
            if !self.inner.store.delete_app(app_id).await? {
                return Err(ApiError::not_found("app"));
            }
            for live in self.inner.live.live(Some(app_id)) {
                self.inner.live.kick(&live.stream_id, "app deleted");
            }
            Ok(())
        }
        .await;
        let attempt = Attempt::new(audit::APP_DELETE, format!("app/{app_id}"), Some(app_id));
        self.audit(who, attempt, outcome).await
    }

    // ---- streams ----

    pub async fn list_streams(&self, who: &Principal, app_id: &str) -> Result<Vec<Stream>, ApiError> {
        self.visible_app(who, app_id).await?;
        Ok(self.inner.store.list_streams(Some(app_id)).await?)
    }

    pub async fn get_stream(&self, who: &Principal, app_id: &str, stream_id: &str) -> Result<Stream, ApiError> {
        self.visible_stream(who, app_id, stream_id).await
    }

    fn with_key(&self, stream: Stream, key: String) -> Result<StreamWithKey, ApiError> {
        let (_, playback_url) = self.sign(&stream.app_id, &stream.id, PLAYBACK_URL_TTL, None)?;
        Ok(StreamWithKey {
            rtmp_url: self.inner.settings.public_rtmp_base.clone(),
            playback_url,
            stream,
            stream_key: key,
        })
    }

    pub async fn create_stream(
        &self,
        who: &Principal,
        app_id: &str,
        body: CreateStream,
    ) -> Result<StreamWithKey, ApiError> {
        let outcome = async {
            self.visible_app(who, app_id).await?;
            self.check_profile(body.profile.as_deref())?;
            let (stream, key) = self
                .inner
                .store
                .create_stream(
                    app_id,
                    NewStream {
                        name: body.name,
                        profile: body.profile,
                    },
                )
                .await?;
            self.with_key(stream, key)
        }
        .await;
        let attempt = match &outcome {
            Ok(created) => Attempt::on_stream(audit::STREAM_CREATE, app_id, &created.stream.id),
            Err(_) => Attempt::new(audit::STREAM_CREATE, "stream", Some(app_id)),
        };
        self.audit(who, attempt, outcome).await
    }

    pub async fn update_stream(
        &self,
        who: &Principal,
        app_id: &str,
        stream_id: &str,
        body: UpdateStream,
    ) -> Result<Stream, ApiError> {
        let patch = StreamPatch {
            name: body.name,
            profile: body.profile,
            enabled: body.enabled,
        };
        self.patch_stream(who, audit::STREAM_UPDATE, app_id, stream_id, patch)
            .await
    }

    pub async fn set_enabled(
        &self,
        who: &Principal,
        app_id: &str,
        stream_id: &str,
        enabled: bool,
    ) -> Result<Stream, ApiError> {
        let action = if enabled {
            audit::STREAM_ENABLE
        } else {
            audit::STREAM_DISABLE
        };
        let patch = StreamPatch {
            enabled: Some(enabled),
            ..StreamPatch::default()
        };
        self.patch_stream(who, action, app_id, stream_id, patch).await
    }

    async fn patch_stream(
        &self,
        who: &Principal,
        action: &'static str,
        app_id: &str,
        stream_id: &str,
        patch: StreamPatch,
    ) -> Result<Stream, ApiError> {
        let outcome = async {
            self.visible_stream(who, app_id, stream_id).await?;
            self.check_profile(patch.profile.as_ref().and_then(|p| p.as_deref()))?;
            let disabling = patch.enabled == Some(false);
            let stream = self
                .inner
                .store
                .update_stream(stream_id, patch)
                .await?
                .ok_or_else(|| ApiError::not_found("stream"))?;
            if disabling {
                // Disabling means now, not at the publisher's next reconnect.
                self.inner.live.kick(stream_id, "stream disabled");
            }
            Ok(stream)
        }
        .await;
        self.audit(who, Attempt::on_stream(action, app_id, stream_id), outcome)
            .await
    }

    pub async fn rotate_key(&self, who: &Principal, app_id: &str, stream_id: &str) -> Result<StreamWithKey, ApiError> {
        let outcome = async {
            self.visible_stream(who, app_id, stream_id).await?;
            let (stream, key) = self
                .inner
                .store
                .rotate_stream_key(stream_id)
                .await?
                .ok_or_else(|| ApiError::not_found("stream"))?;
            // A leaked key is why keys get rotated: whoever holds it goes now.
            self.inner.live.kick(stream_id, "stream key rotated");
            self.with_key(stream, key)
        }
        .await;
        let attempt = Attempt::on_stream(audit::STREAM_ROTATE_KEY, app_id, stream_id);
        self.audit(who, attempt, outcome).await
    }

    pub async fn delete_stream(&self, who: &Principal, app_id: &str, stream_id: &str) -> Result<(), ApiError> {
        let outcome = async {
            self.visible_stream(who, app_id, stream_id).await?;
            if !self.inner.store.delete_stream(stream_id).await? {
                return Err(ApiError::not_found("stream"));
            }
            self.inner.live.kick(stream_id, "stream deleted");
            Ok(())
        }
        .await;
        let attempt = Attempt::on_stream(audit::STREAM_DELETE, app_id, stream_id);
        self.audit(who, attempt, outcome).await
    }

    pub async fn mint_token(
        &self,
        who: &Principal,
        app_id: &str,
        stream_id: &str,
        body: MintToken,
    ) -> Result<MintedToken, ApiError> {
        let outcome = async {
            self.visible_stream(who, app_id, stream_id).await?;
            let ttl = body.ttl_secs.unwrap_or(DEFAULT_TOKEN_TTL);
            if ttl == 0 || ttl > MAX_TOKEN_TTL {
                return Err(ApiError::invalid(format!(
                    "ttl_secs must be between 1 and {MAX_TOKEN_TTL}"
                )));
            }
            if body
                .viewer_id
                .as_ref()
                .is_some_and(|v| !(1..=128).contains(&v.chars().count()) || v.chars().any(char::is_control))
            {
                return Err(ApiError::invalid("viewer_id must be 1–128 printable characters"));
            }
            let (token, playback_url) = self.sign(app_id, stream_id, Duration::from_secs(ttl), body.viewer_id)?;
            let expires_at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
                + ttl;
            Ok(MintedToken {
                token,
                expires_at,
                playback_url,
            })
        }
        .await;
        let attempt = Attempt::on_stream(audit::PLAYBACK_TOKEN_MINT, app_id, stream_id);
        self.audit(who, attempt, outcome).await
    }

    // ---- playback keys ----

    pub async fn list_playback_keys(&self, who: &Principal, app_id: &str) -> Result<Vec<PlaybackKey>, ApiError> {
        self.visible_app(who, app_id).await?;
        Ok(self.inner.store.list_playback_keys(app_id).await?)
    }

    async fn reload_keys(&self) {
        if let Err(e) = self.inner.tokens.reload(&*self.inner.store).await {
            tracing::error!(error = %e, "admin API: reloading playback keys failed; the periodic reload will retry");
        }
    }

    pub async fn create_playback_key(
        &self,
        who: &Principal,
        app_id: &str,
        body: CreatePlaybackKey,
    ) -> Result<CreatedPlaybackKey, ApiError> {
        let outcome = async {
            self.visible_app(who, app_id).await?;
            let (key, secret) = self
                .inner
                .store
                .create_playback_key(
                    app_id,
                    NewPlaybackKey {
                        algorithm: body.algorithm,
                        public_key_pem: body.public_key_pem,
                    },
                )
                .await?;
            self.reload_keys().await;
            Ok(CreatedPlaybackKey { key, secret })
        }
        .await;
        let target = match &outcome {
            Ok(created) => format!("playback_key/{}", created.key.kid),
            Err(_) => "playback_key".to_owned(),
        };
        let attempt = Attempt::new(audit::PLAYBACK_KEY_CREATE, target, Some(app_id));
        self.audit(who, attempt, outcome).await
    }

    pub async fn delete_playback_key(&self, who: &Principal, app_id: &str, kid: &str) -> Result<(), ApiError> {
        let outcome = async {
            self.visible_app(who, app_id).await?;
            if !plausible_id(kid) || !self.inner.store.delete_playback_key(app_id, kid).await? {
                return Err(ApiError::not_found("playback key"));
            }
            self.reload_keys().await;
            Ok(())
        }
        .await;
        let attempt = Attempt::new(audit::PLAYBACK_KEY_DELETE, format!("playback_key/{kid}"), Some(app_id));
        self.audit(who, attempt, outcome).await
    }

    // ---- admin tokens (global tokens only) ----

    pub async fn list_admin_tokens(&self, who: &Principal) -> Result<Vec<AdminToken>, ApiError> {
        who.require_global()?;
        Ok(self.inner.store.list_admin_tokens(None).await?)
    }

    pub async fn create_admin_token(
        &self,
        who: &Principal,
        body: CreateAdminToken,
    ) -> Result<CreatedAdminToken, ApiError> {
        let app_id = body.app_id.clone();
        let outcome = async {
            who.require_global()?;
            if let Some(app) = &body.app_id {
                if !plausible_id(app) {
                    return Err(ApiError::not_found("app"));
                }
            }
            let (token, secret) = self
                .inner
                .store
                .create_admin_token(NewAdminToken {
                    name: body.name,
                    app_id: body.app_id,
                })
                .await?;
            Ok(CreatedAdminToken { token, secret })
        }
        .await;
        let target = match &outcome {
            Ok(created) => format!("admin_token/{}", created.token.id),
            Err(_) => "admin_token".to_owned(),
        };
        let attempt = Attempt::new(audit::ADMIN_TOKEN_CREATE, target, app_id.as_deref());
        self.audit(who, attempt, outcome).await
    }

    pub async fn revoke_admin_token(&self, who: &Principal, token_id: &str) -> Result<(), ApiError> {
        let outcome = async {
            who.require_global()?;
            if !plausible_id(token_id) || !self.inner.store.revoke_admin_token(token_id).await? {
                return Err(ApiError::not_found("admin token"));
            }
            Ok(())
        }
        .await;
        let attempt = Attempt::new(audit::ADMIN_TOKEN_REVOKE, format!("admin_token/{token_id}"), None);
        self.audit(who, attempt, outcome).await
    }

    // ---- live ----

    pub fn live(&self, who: &Principal, app_id: Option<&str>) -> Vec<LiveStreamStats> {
        let mut live = match (&who.app_id, app_id) {
            (Some(own), Some(asked)) if own != asked => Vec::new(),
            (Some(own), _) => self.inner.live.live(Some(own)),
            (None, asked) => self.inner.live.live(asked),
        };
        for stats in &mut live {
            self.add_viewers(stats);
        }
        live
    }

    fn add_viewers(&self, stats: &mut LiveStreamStats) {
        stats.viewers = self.audience().count(&stats.stream_id).map_or(0, |c| c.viewers);
    }

    pub fn live_stream(&self, who: &Principal, stream_id: &str) -> Result<LiveStreamStats, ApiError> {
        self.inner
            .live
            .live_stream(stream_id)
            .filter(|s| who.may_see(&s.app_id))
            .map(|mut stats| {
                self.add_viewers(&mut stats);
                stats
            })
            .ok_or_else(|| ApiError::not_found("live stream"))
    }

    pub async fn kick(&self, who: &Principal, stream_id: &str) -> Result<Kicked, ApiError> {
        let visible = self.live_stream(who, stream_id);
        let app_id = visible.as_ref().ok().map(|s| s.app_id.clone());
        let outcome = visible.map(|_| Kicked {
            kicked: self.inner.live.kick(stream_id, "kicked by the admin API"),
        });
        let attempt = Attempt::new(audit::STREAM_KICK, format!("stream/{stream_id}"), app_id.as_deref());
        self.audit(who, attempt, outcome).await
    }

    // ---- audit ----

    pub async fn audit_log(&self, who: &Principal, query: AuditQuery) -> Result<Vec<AuditEntry>, ApiError> {
        let app_id = match (&who.app_id, query.app_id) {
            (Some(own), Some(asked)) if *own != asked => return Ok(Vec::new()),
            (Some(own), _) => Some(own.clone()),
            (None, asked) => asked,
        };
        if let Some(result) = &query.result {
            if result != "ok" && result != "error" {
                return Err(ApiError::invalid("result must be ok or error"));
            }
        }
        if let Some(limit) = query.limit {
            ApiError::check_limit(limit, AUDIT_MAX_LIMIT)?;
        }
        let filter = AuditFilter {
            actor: query.actor,
            action: query.action,
            app_id,
            target: query.target,
            result: query.result,
            since_ms: query.since_ms,
            until_ms: query.until_ms,
            limit: query.limit,
        };
        Ok(self.inner.store.audit(&filter).await?)
    }
}

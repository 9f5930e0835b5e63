//! The default authorizer: the stream key names a stream in our store, and
//! its app supplies the settings.

use std::sync::Arc;

use async_trait::async_trait;

use super::{AuthDenial, Authorization, DenyReason, LadderChoice, PublishAuthorizer};
use crate::control::ControlStore;
use crate::ingest::PublishRequest;

#[derive(Debug, Clone)]
pub struct EmbeddedAuthorizer {
    store: Arc<dyn ControlStore>,
}

impl EmbeddedAuthorizer {
    pub fn new(store: Arc<dyn ControlStore>) -> Self {
        Self { store }
    }
}

fn unavailable(error: impl std::fmt::Display) -> AuthDenial {
    tracing::error!(%error, "store unavailable during publish");
    AuthDenial::new(DenyReason::StoreUnavailable, "control plane unavailable, try again")
}

#[async_trait]
impl PublishAuthorizer for EmbeddedAuthorizer {
    async fn authorize(&self, request: &PublishRequest) -> Result<Authorization, AuthDenial> {
        let stream = match self.store.stream_by_key(&request.stream_key).await {
            Ok(Some(stream)) => stream,
            Ok(None) => return Err(AuthDenial::new(DenyReason::UnknownKey, "unknown stream key")),
            Err(e) => return Err(unavailable(e)),
        };
        if !stream.enabled {
            return Err(
                AuthDenial::new(DenyReason::Disabled, "stream is disabled").of_stream(&stream.id, &stream.app_id)
            );
        }
        let app = match self.store.app(&stream.app_id).await {
            Ok(Some(app)) => app,
            // The store deletes an app's streams with it; a stream without
            // one is a race with that delete.
            Ok(None) => return Err(AuthDenial::new(DenyReason::UnknownKey, "unknown stream key")),
            Err(e) => return Err(unavailable(e)),
        };
        let ladder = match (stream.profile, app.custom_ladder, app.profile) {
            (Some(profile), _, _) => LadderChoice::Profile(profile),
            (None, Some(ladder), _) => LadderChoice::Custom(ladder),
            (None, None, Some(profile)) => LadderChoice::Profile(profile),
            (None, None, None) => LadderChoice::ServerDefault,
        };
        Ok(Authorization {
            stream_id: stream.id,
            app_id: app.id,
            ladder,
            encrypt: Some(app.encrypt),
            key_rotation_segments: Some(app.key_rotation_segments),
            record: app.record,
            storage: super::StorageChoice {
                bucket: app.storage_bucket,
                prefix: app.storage_prefix,
                cdn_base_url: app.cdn_base_url,
            },
            max_streams: app.max_streams,
            max_ingest_kbps: app.max_ingest_kbps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::model::{AppPatch, NewApp, NewStream, StreamPatch, DEFAULT_APP_ID};
    use crate::control::SqliteStore;

    fn request(key: &str) -> PublishRequest {
        PublishRequest {
            protocol: "rtmp",
            app: "live".into(),
            stream_key: key.into(),
            client_addr: "127.0.0.1:5000".parse().expect("addr"),
            connection_id: 1,
        }
    }

    #[tokio::test]
    async fn the_apps_settings_and_the_streams_override_are_applied() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SqliteStore::open(&dir.path().join("t.db")).await.expect("open"));
        let auth = EmbeddedAuthorizer::new(store.clone());
        let app = store
            .create_app(NewApp {
                name: "tenant".into(),
                custom_ladder: Some("passthrough = true\n".into()),
                encrypt: Some(false),
                key_rotation_segments: Some(3),
                record: Some(true),
                max_streams: Some(2),
                max_ingest_kbps: Some(900),
                ..NewApp::default()
            })
            .await
            .expect("app");
        let (plain, plain_key) = store
            .create_stream(
                &app.id,
                NewStream {
                    name: "a".into(),
                    profile: None,
                },
            )
            .await
            .expect("stream");
        let (_, override_key) = store
            .create_stream(
                &app.id,
                NewStream {
                    name: "b".into(),
                    profile: Some("small".into()),
                },
            )
            .await
            .expect("stream");

        let granted = auth.authorize(&request(&plain_key)).await.expect("allowed");
        assert_eq!(granted.stream_id, plain.id);
        assert_eq!(granted.app_id, app.id);
        assert_eq!(granted.ladder, LadderChoice::Custom("passthrough = true\n".into()));
        assert_eq!(granted.encrypt, Some(false));
        assert_eq!(granted.key_rotation_segments, Some(3));
        assert!(granted.record);
        assert_eq!((granted.max_streams, granted.max_ingest_kbps), (Some(2), Some(900)));
        let granted = auth.authorize(&request(&override_key)).await.expect("allowed");
        assert_eq!(granted.ladder, LadderChoice::Profile("small".into()));

        store
            .update_app(
                &app.id,
                AppPatch {
                    custom_ladder: Some(None),
                    profile: Some(Some("passthrough".into())),
                    ..AppPatch::default()
                },
            )
            .await
            .expect("patch");
        let granted = auth.authorize(&request(&plain_key)).await.expect("allowed");
        assert_eq!(granted.ladder, LadderChoice::Profile("passthrough".into()));

        let (_, default_key) = store
            .create_stream(
                DEFAULT_APP_ID,
                NewStream {
                    name: "c".into(),
                    profile: None,
                },
            )
            .await
            .expect("stream");
        let granted = auth.authorize(&request(&default_key)).await.expect("allowed");
        assert_eq!(granted.ladder, LadderChoice::ServerDefault);
    }

    #[tokio::test]
    async fn unknown_and_disabled_keys_are_refused_with_their_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SqliteStore::open(&dir.path().join("t.db")).await.expect("open"));
        let auth = EmbeddedAuthorizer::new(store.clone());
        let denial = auth.authorize(&request("live_nope")).await.expect_err("unknown");
        assert_eq!(denial.reason, DenyReason::UnknownKey);
        let (stream, key) = store
            .create_stream(
                DEFAULT_APP_ID,
                NewStream {
                    name: "d".into(),
                    profile: None,
                },
            )
            .await
            .expect("stream");
        store
            .update_stream(
                &stream.id,
                StreamPatch {
                    enabled: Some(false),
                    ..StreamPatch::default()
                },
            )
            .await
            .expect("disable");
        let denial = auth.authorize(&request(&key)).await.expect_err("disabled");
        assert_eq!(denial.reason, DenyReason::Disabled);
        assert_eq!(denial.message, "stream is disabled");
    }
}

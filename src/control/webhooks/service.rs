//! The rules for managing endpoints, without HTTP: URL and address checks,
//! secrets, test events, redelivery. The admin API adds scoping and audit.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::address::AddressPolicy;
use super::dispatcher::Dispatcher;
use super::model::*;
use super::signing::{is_valid_secret, new_secret};
use crate::control::clock::unix_secs;
use crate::control::lifecycle::Lifecycle;
use crate::control::store::{EventStore, StoreError};

const MAX_URL_LEN: usize = 2048;
const MAX_DESCRIPTION_LEN: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    Invalid(String),
    #[error("no such webhook endpoint")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct WebhookService {
    store: Arc<dyn EventStore>,
    policy: Arc<AddressPolicy>,
    dispatcher: Arc<Dispatcher>,
    lifecycle: Arc<Lifecycle>,
    /// How long the previous secret keeps signing after a rotation.
    rollover: Duration,
}

/// An endpoint as created or rotated: the only time its secret is shown.
#[derive(Debug, Clone)]
pub struct WithSecret {
    pub endpoint: WebhookEndpoint,
    pub secret: crate::control::keys::Secret,
}

impl WebhookService {
    pub fn new(
        store: Arc<dyn EventStore>,
        policy: Arc<AddressPolicy>,
        dispatcher: Arc<Dispatcher>,
        lifecycle: Arc<Lifecycle>,
        rollover: Duration,
    ) -> Self {
        Self {
            store,
            policy,
            dispatcher,
            lifecycle,
            rollover,
        }
    }

    async fn check_url(&self, url: &str) -> Result<(), WebhookError> {
        if url.len() > MAX_URL_LEN {
            return Err(WebhookError::Invalid(format!(
                "url is longer than {MAX_URL_LEN} characters"
            )));
        }
        let parsed = reqwest::Url::parse(url).map_err(|e| WebhookError::Invalid(format!("url: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(WebhookError::Invalid("url must be http:// or https://".into()));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(WebhookError::Invalid(
                "url must not carry credentials; the signature authenticates us".into(),
            ));
        }
        self.policy
            .check_url(&parsed)
            .await
            .map_err(|e| WebhookError::Invalid(format!("url: {e}")))
    }

    fn check_types(types: &[String]) -> Result<(), WebhookError> {
        match types.iter().find(|t| EventType::parse(t).is_none()) {
            Some(unknown) => {
                let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                Err(WebhookError::Invalid(format!(
                    "unknown event type {unknown:?}; known types are {known:?}"
                )))
            }
            None => Ok(()),
        }
    }

    fn check_description(description: &str) -> Result<(), WebhookError> {
        if description.chars().count() > MAX_DESCRIPTION_LEN || description.chars().any(char::is_control) {
            return Err(WebhookError::Invalid(format!(
                "description must be at most {MAX_DESCRIPTION_LEN} characters without control characters"
            )));
        }
        Ok(())
    }

    pub async fn create(
        &self,
        app_id: &str,
        url: String,
        description: Option<String>,
        mut event_types: Vec<String>,
        secret: Option<crate::control::keys::Secret>,
    ) -> Result<WithSecret, WebhookError> {
        self.check_url(&url).await?;
        Self::check_types(&event_types)?;
        let description = description.unwrap_or_default();
        Self::check_description(&description)?;
        let secret = match secret {
            Some(s) if is_valid_secret(s.expose()) => s,
            Some(_) => {
                return Err(WebhookError::Invalid(
                    "secret must be whsec_ followed by base64 of 24 to 64 bytes".into(),
                ))
            }
            None => new_secret().into(),
        };
        event_types.sort();
        event_types.dedup();
        let endpoint = self
            .store
            .create_webhook(
                app_id,
                NewWebhook {
                    url,
                    description,
                    event_types,
                    secret: secret.clone(),
                },
            )
            .await?;
        self.dispatcher.refresh().await;
        Ok(WithSecret { endpoint, secret })
    }

    pub async fn update(&self, id: &str, mut patch: WebhookPatch) -> Result<WebhookEndpoint, WebhookError> {
        if let Some(url) = &patch.url {
            self.check_url(url).await?;
        }
        if let Some(types) = patch.event_types.as_mut() {
            Self::check_types(types)?;
            types.sort();
            types.dedup();
        }
        if let Some(description) = &patch.description {
            Self::check_description(description)?;
        }
        let updated = self
            .store
            .update_webhook(id, patch)
            .await?
            .ok_or(WebhookError::NotFound)?;
        self.dispatcher.refresh().await;
        Ok(updated)
    }

    pub async fn rotate_secret(&self, id: &str) -> Result<WithSecret, WebhookError> {
        let secret = new_secret();
        let until = unix_secs().saturating_add(self.rollover.as_secs() as i64);
        let endpoint = self
            .store
            .rotate_webhook_secret(id, &secret, until)
            .await?
            .ok_or(WebhookError::NotFound)?;
        Ok(WithSecret {
            endpoint,
            secret: secret.into(),
        })
    }

    pub async fn delete(&self, id: &str) -> Result<(), WebhookError> {
        if !self.store.delete_webhook(id).await? {
            return Err(WebhookError::NotFound);
        }
        self.dispatcher.refresh().await;
        Ok(())
    }

    /// A `webhook.test` event for this endpoint alone, through the same
    /// queue as everything else.
    pub async fn send_test(&self, endpoint: &WebhookEndpoint) -> Result<RecordedEvent, WebhookError> {
        let new = NewEvent {
            event_type: EventType::WebhookTest,
            app_id: Some(endpoint.app_id.clone()),
            stream_id: None,
            state: None,
            data: json!({ "endpoint_id": endpoint.id, "message": "a test event from Pulse Edge" }),
            only_endpoint: Some(endpoint.id.clone()),
        };
        let recorded =
            self.lifecycle.commit(new).await.ok_or_else(|| {
                WebhookError::Invalid("the test event could not be recorded (see the server log)".into())
            })?;
        Ok((*recorded).clone())
    }

    pub async fn redeliver(&self, endpoint_id: &str, event_id: &str) -> Result<(), WebhookError> {
        if !self.store.redeliver(endpoint_id, event_id).await? {
            return Err(WebhookError::NotFound);
        }
        self.dispatcher.refresh().await;
        Ok(())
    }

    pub async fn redeliver_dead(&self, endpoint_id: &str) -> Result<u64, WebhookError> {
        let count = self.store.redeliver_dead(endpoint_id).await?;
        self.dispatcher.refresh().await;
        Ok(count)
    }

    pub fn feed(&self) -> tokio::sync::broadcast::Receiver<Arc<RecordedEvent>> {
        self.lifecycle.feed()
    }

    pub fn store(&self) -> &dyn EventStore {
        &*self.store
    }
}

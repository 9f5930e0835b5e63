//! The admin API's webhook endpoints, delivery log and event feed: scoping
//! and audit here, the rules in [`crate::control::webhooks::WebhookService`].

pub mod dto;
pub mod routes;

use dto::*;

use super::audit::Attempt;
use super::auth::Principal;
use super::error::ApiError;
use super::service::AdminService;
use crate::control::webhooks::model::{
    Delivery, DeliveryFilter, DeliveryStatus, EventFilter, RecordedEvent, WebhookEndpoint, WebhookPatch,
};
use crate::control::webhooks::WebhookError;

pub const WEBHOOK_CREATE: &str = "webhook.create";
pub const WEBHOOK_UPDATE: &str = "webhook.update";
pub const WEBHOOK_DELETE: &str = "webhook.delete";
pub const WEBHOOK_ROTATE_SECRET: &str = "webhook.rotate_secret";
pub const WEBHOOK_TEST: &str = "webhook.test";
pub const WEBHOOK_REDELIVER: &str = "webhook.redeliver";
pub const WEBHOOK_REDELIVER_FAILED: &str = "webhook.redeliver_failed";

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Invalid(message) => ApiError::invalid(message),
            WebhookError::NotFound => ApiError::not_found("webhook"),
            WebhookError::Store(e) => e.into(),
        }
    }
}

fn limit(asked: Option<u32>) -> Result<u32, ApiError> {
    asked.map_or(Ok(DEFAULT_LIMIT), |n| ApiError::check_limit(n, MAX_LIMIT))
}

fn target(webhook_id: &str) -> String {
    format!("webhook/{webhook_id}")
}

impl AdminService {
    /// The endpoint, if it belongs to `app_id` and the caller may see that app.
    async fn visible_webhook(&self, who: &Principal, app_id: &str, id: &str) -> Result<WebhookEndpoint, ApiError> {
        self.visible_app(who, app_id).await?;
        if !super::service::plausible_id(id) {
            return Err(ApiError::not_found("webhook"));
        }
        match self.webhooks().store().webhook(id).await? {
            Some(endpoint) if endpoint.app_id == app_id => Ok(endpoint),
            _ => Err(ApiError::not_found("webhook")),
        }
    }

    async fn view(&self, endpoint: WebhookEndpoint) -> Result<WebhookView, ApiError> {
        let backlog = self.webhooks().store().backlog(&endpoint.id).await?;
        Ok(WebhookView { endpoint, backlog })
    }

    pub async fn list_webhooks(&self, who: &Principal, app_id: &str) -> Result<Vec<WebhookView>, ApiError> {
        self.visible_app(who, app_id).await?;
        let mut views = Vec::new();
        for endpoint in self.webhooks().store().webhooks(Some(app_id)).await? {
            views.push(self.view(endpoint).await?);
        }
        Ok(views)
    }

    pub async fn get_webhook(&self, who: &Principal, app_id: &str, id: &str) -> Result<WebhookView, ApiError> {
        let endpoint = self.visible_webhook(who, app_id, id).await?;
        self.view(endpoint).await
    }

    pub async fn create_webhook(
        &self,
        who: &Principal,
        app_id: &str,
        body: CreateWebhook,
    ) -> Result<WebhookWithSecret, ApiError> {
        let outcome = async {
            self.visible_app(who, app_id).await?;
            let created = self
                .webhooks()
                .create(
                    app_id,
                    body.url,
                    body.description,
                    body.event_types.unwrap_or_default(),
                    body.secret,
                )
                .await?;
            Ok(WebhookWithSecret {
                endpoint: created.endpoint,
                secret: created.secret.expose().to_owned(),
            })
        }
        .await;
        let target = match &outcome {
            Ok(created) => target(&created.endpoint.id),
            Err(_) => "webhook".to_owned(),
        };
        self.audit(who, Attempt::new(WEBHOOK_CREATE, target, Some(app_id)), outcome)
            .await
    }

    pub async fn update_webhook(
        &self,
        who: &Principal,
        app_id: &str,
        id: &str,
        body: UpdateWebhook,
    ) -> Result<WebhookView, ApiError> {
        let outcome = async {
            self.visible_webhook(who, app_id, id).await?;
            let patch = WebhookPatch {
                url: body.url,
                description: body.description,
                event_types: body.event_types,
                enabled: body.enabled,
            };
            let endpoint = self.webhooks().update(id, patch).await?;
            self.view(endpoint).await
        }
        .await;
        self.audit(who, Attempt::new(WEBHOOK_UPDATE, target(id), Some(app_id)), outcome)
            .await
    }

    pub async fn delete_webhook(&self, who: &Principal, app_id: &str, id: &str) -> Result<(), ApiError> {
        let outcome = async {
            self.visible_webhook(who, app_id, id).await?;
            Ok(self.webhooks().delete(id).await?)
        }
        .await;
        self.audit(who, Attempt::new(WEBHOOK_DELETE, target(id), Some(app_id)), outcome)
            .await
    }

    pub async fn rotate_webhook_secret(
        &self,
        who: &Principal,
        app_id: &str,
        id: &str,
    ) -> Result<WebhookWithSecret, ApiError> {
        let outcome = async {
            self.visible_webhook(who, app_id, id).await?;
            let rotated = self.webhooks().rotate_secret(id).await?;
            Ok(WebhookWithSecret {
                endpoint: rotated.endpoint,
                secret: rotated.secret.expose().to_owned(),
            })
        }
        .await;
        self.audit(
            who,
            Attempt::new(WEBHOOK_ROTATE_SECRET, target(id), Some(app_id)),
            outcome,
        )
        .await
    }

    pub async fn test_webhook(&self, who: &Principal, app_id: &str, id: &str) -> Result<TestSent, ApiError> {
        let outcome = async {
            let endpoint = self.visible_webhook(who, app_id, id).await?;
            let event = self.webhooks().send_test(&endpoint).await?;
            Ok(TestSent { event_id: event.id })
        }
        .await;
        self.audit(who, Attempt::new(WEBHOOK_TEST, target(id), Some(app_id)), outcome)
            .await
    }

    pub async fn list_deliveries(
        &self,
        who: &Principal,
        app_id: &str,
        id: &str,
        query: DeliveryQuery,
    ) -> Result<Vec<Delivery>, ApiError> {
        self.visible_webhook(who, app_id, id).await?;
        let status = match query.status.as_deref() {
            None => None,
            Some(text) => Some(
                DeliveryStatus::parse(text)
                    .ok_or_else(|| ApiError::invalid("status must be pending, delivered or dead"))?,
            ),
        };
        let filter = DeliveryFilter {
            status,
            limit: limit(query.limit)?,
        };
        Ok(self.webhooks().store().deliveries(id, &filter).await?)
    }

    pub async fn redeliver(&self, who: &Principal, app_id: &str, id: &str, event_id: &str) -> Result<(), ApiError> {
        let outcome = async {
            self.visible_webhook(who, app_id, id).await?;
            if !super::service::plausible_id(event_id) {
                return Err(ApiError::not_found("delivery"));
            }
            self.webhooks().redeliver(id, event_id).await.map_err(|e| match e {
                WebhookError::NotFound => ApiError::not_found("delivery"),
                other => other.into(),
            })
        }
        .await;
        let attempt = Attempt::new(
            WEBHOOK_REDELIVER,
            format!("webhook/{id}/event/{event_id}"),
            Some(app_id),
        );
        self.audit(who, attempt, outcome).await
    }

    pub async fn redeliver_failed(&self, who: &Principal, app_id: &str, id: &str) -> Result<Redelivered, ApiError> {
        let outcome = async {
            self.visible_webhook(who, app_id, id).await?;
            let redelivered = self.webhooks().redeliver_dead(id).await?;
            Ok(Redelivered { redelivered })
        }
        .await;
        self.audit(
            who,
            Attempt::new(WEBHOOK_REDELIVER_FAILED, target(id), Some(app_id)),
            outcome,
        )
        .await
    }

    pub async fn list_events(
        &self,
        who: &Principal,
        app_id: &str,
        query: EventQuery,
    ) -> Result<Vec<RecordedEvent>, ApiError> {
        self.visible_app(who, app_id).await?;
        let filter = EventFilter {
            app_id: Some(app_id.to_owned()),
            stream_id: query.stream_id,
            limit: limit(query.limit)?,
        };
        Ok(self.webhooks().store().events(&filter).await?)
    }

    /// Which app's events a feed subscriber gets: `None` is every app.
    pub async fn feed_scope(&self, who: &Principal, asked: Option<String>) -> Result<Option<String>, ApiError> {
        match (&who.app_id, asked) {
            (Some(own), None) => Ok(Some(own.clone())),
            (_, Some(app_id)) => {
                self.visible_app(who, &app_id).await?;
                Ok(Some(app_id))
            }
            (None, None) => Ok(None),
        }
    }
}

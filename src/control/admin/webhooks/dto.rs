//! Bodies of the webhook endpoints.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::control::webhooks::model::{Backlog, WebhookEndpoint};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// http:// or https://. Loopback, private, link-local and metadata
    /// addresses are refused unless the operator allows their network.
    #[schema(max_length = 2048)]
    pub url: String,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// Event types to send (`stream.connected`, …); empty or absent: all.
    pub event_types: Option<Vec<String>>,
    /// Your own `whsec_…` secret; absent: we generate one.
    #[schema(value_type = Option<String>)]
    pub secret: Option<crate::control::keys::Secret>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    /// Re-enabling an endpoint the server disabled (410) resumes its queue.
    pub enabled: Option<bool>,
}

/// An endpoint with its queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    #[serde(flatten)]
    pub endpoint: WebhookEndpoint,
    pub backlog: Backlog,
}

/// Shown once, on create and on rotate.
#[derive(Serialize, ToSchema)]
pub struct WebhookWithSecret {
    #[serde(flatten)]
    pub endpoint: WebhookEndpoint,
    /// `whsec_…`: verify our `webhook-signature` with it.
    pub secret: String,
}

impl std::fmt::Debug for WebhookWithSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookWithSecret")
            .field("endpoint", &self.endpoint)
            .field("secret", &"[redacted]")
            .finish()
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    /// `pending`, `delivered` or `dead`.
    pub status: Option<String>,
    /// 1–1000 (default 100), newest first.
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    pub stream_id: Option<String>,
    /// 1–1000 (default 100), newest first.
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    /// Global tokens: only this app's events. App tokens always get their own app's.
    pub app_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Redelivered {
    pub redelivered: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TestSent {
    pub event_id: String,
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    #[test]
    fn a_customer_supplied_secret_is_not_in_debug_output() {
        let body: CreateWebhook =
            serde_json::from_str(r#"{"url":"https://h.example/x","secret":"whsec_customer-chosen"}"#).expect("json");
        assert_eq!(body.secret.as_ref().map(|s| s.expose()), Some("whsec_customer-chosen"));
        assert!(!format!("{body:?}").contains("customer-chosen"));
    }
}

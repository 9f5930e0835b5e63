//! One HTTP attempt at one endpoint: signed, with timeouts, no redirects,
//! and only to addresses the policy allows.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};

use super::address::{AddressPolicy, CheckingResolver};
use super::model::{RecordedEvent, WebhookEndpoint};
use super::retry::parse_retry_after;
use super::signing::signature_header;

/// What came back, before the retry policy judges it.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: Option<u16>,
    /// Set when the attempt failed.
    pub error: Option<String>,
    pub retry_after: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
}

/// What a receiver's answer body may add to an error message.
const ERROR_BODY_CHARS: usize = 200;

impl Sender {
    pub fn new(policy: Arc<AddressPolicy>, timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(CheckingResolver::new(policy.clone())))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self { client, policy })
    }

    pub async fn send(&self, endpoint: &WebhookEndpoint, event: &RecordedEvent, now: SystemTime) -> Answer {
        let failed = |error: String| Answer {
            status: None,
            error: Some(error),
            retry_after: None,
        };
        let url = match reqwest::Url::parse(&endpoint.url) {
            Ok(url) => url,
            Err(e) => return failed(format!("the endpoint URL does not parse: {e}")),
        };
        // Names are checked by our resolver as the connection is made; IP
        // literals never reach a resolver.
        if url.domain().is_none() {
            if let Err(e) = self.policy.check_url(&url).await {
                return failed(e.to_string());
            }
        }
        let timestamp = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let secrets = active_secrets(endpoint, timestamp);
        let signature = signature_header(&secrets, &event.id, timestamp, event.payload.as_bytes());
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, HeaderValue::from_static("PulseEdge-Webhooks/1"));
        for (name, value) in [
            ("webhook-id", event.id.clone()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ] {
            match HeaderValue::from_str(&value) {
                Ok(value) => {
                    headers.insert(name, value);
                }
                Err(_) => return failed(format!("{name} is not a valid header value")),
            }
        }
        let response = self
            .client
            .post(url)
            .headers(headers)
            .body(event.payload.clone())
            .send()
            .await;
        match response {
            Err(e) => failed(describe(&e)),
            Ok(response) => {
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, now));
                if status.is_success() {
                    return Answer {
                        status: Some(status.as_u16()),
                        error: None,
                        retry_after: None,
                    };
                }
                let body = response.text().await.unwrap_or_default();
                let excerpt: String = body
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(ERROR_BODY_CHARS)
                    .collect();
                let error = if status.is_redirection() {
                    format!("HTTP {status}: redirects are not followed")
                } else if excerpt.is_empty() {
                    format!("HTTP {status}")
                } else {
                    format!("HTTP {status}: {excerpt}")
                };
                Answer {
                    status: Some(status.as_u16()),
                    error: Some(error),
                    retry_after,
                }
            }
        }
    }
}

/// The current secret, and the previous one while its rollover lasts.
fn active_secrets(endpoint: &WebhookEndpoint, now: i64) -> Vec<&str> {
    let mut secrets = vec![endpoint.secret.expose()];
    if let (Some(previous), Some(until)) = (&endpoint.previous_secret, endpoint.previous_secret_expires_at) {
        if now < until {
            secrets.push(previous.expose());
        }
    }
    secrets
}

/// reqwest's top-level message is vague ("error sending request"); the
/// cause chain says what happened (our resolver's refusal, a timeout, …).
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "could not connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(previous_until: Option<i64>) -> WebhookEndpoint {
        WebhookEndpoint {
            id: "wh_1".into(),
            app_id: "app_1".into(),
            url: "http://127.0.0.1:9/".into(),
            description: String::new(),
            event_types: vec![],
            enabled: true,
            disabled_reason: None,
            created_at: 0,
            updated_at: 0,
            previous_secret_expires_at: previous_until,
            secret: "whsec_new".into(),
            previous_secret: previous_until.map(|_| "whsec_old".into()),
        }
    }

    #[test]
    fn the_previous_secret_signs_until_its_rollover_ends() {
        assert_eq!(active_secrets(&endpoint(None), 100), ["whsec_new"]);
        assert_eq!(active_secrets(&endpoint(Some(200)), 100), ["whsec_new", "whsec_old"]);
        assert_eq!(active_secrets(&endpoint(Some(200)), 200), ["whsec_new"]);
    }

    #[tokio::test]
    async fn forbidden_literal_addresses_fail_without_a_connection() {
        let sender = Sender::new(Arc::new(AddressPolicy::default()), Duration::from_secs(1)).expect("client");
        let event = RecordedEvent {
            position: 1,
            id: "evt_1".into(),
            event_type: "webhook.test".into(),
            app_id: None,
            stream_id: None,
            sequence: None,
            created_at_ms: 0,
            payload: "{}".into(),
        };
        let answer = sender.send(&endpoint(None), &event, SystemTime::now()).await;
        assert_eq!(answer.status, None);
        let error = answer.error.unwrap_or_default();
        assert!(error.contains("loopback"), "{error}");
    }
}

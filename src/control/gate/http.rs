//! The external control plane: every publish is POSTed to the operator's URL
//! and its answer decides. The body is HMAC-signed so the control plane can
//! trust it; an answer that does not come (timeout, refused connection, 5xx)
//! denies the publish (fail closed), unless the outage cache remembers a
//! recent allow for the same key.
//!
//! Request: `POST <url>` with `Content-Type: application/json`,
//! `X-Pulse-Request-Id: <uuid>` and `X-Pulse-Signature: t=<unix seconds>,v1=<hex>`
//! where `v1` is HMAC-SHA256(secret, "<t>.<body>"): the control plane
//! recomputes it and should refuse stale `t` (replays). Body:
//! `{"action":"publish","protocol":"rtmp","app":"live","stream_key":"…","client_ip":"…","request_id":"…"}`.
//!
//! Answer: 2xx with a JSON object allows, optionally naming `stream_id`,
//! `app_id`, `profile`, `encrypt`, `record`. Anything else denies; a JSON
//! `{"reason": "…"}` becomes what the publisher is told.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::outage_cache::OutageCache;
use super::{is_valid_stream_id, AuthDenial, Authorization, DenyReason, LadderChoice, PublishAuthorizer};
use crate::control::keys::{Secret, StreamIdKey};
use crate::ingest::PublishRequest;

pub const SIGNATURE_HEADER: &str = "x-pulse-signature";
pub const REQUEST_ID_HEADER: &str = "x-pulse-request-id";
/// Larger answers are refused: the control plane is trusted, but not to the
/// point of reading any amount it sends.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
const MAX_REASON_CHARS: usize = 200;

#[derive(Debug, Clone)]
pub struct HttpAuthSettings {
    /// May carry credentials (userinfo, a query token): only
    /// [`loggable_url`] of it reaches a log.
    pub url: Secret,
    pub secret: Secret,
    pub timeout: Duration,
    /// Zero: no outage cache.
    pub cache_ttl: Duration,
    /// Keys the ids of streams the control plane does not name.
    pub stream_ids: StreamIdKey,
}

#[derive(Debug)]
pub struct HttpAuthorizer {
    settings: HttpAuthSettings,
    /// The URL as it may be logged.
    log_url: String,
    client: reqwest::Client,
    cache: OutageCache,
}

/// Scheme, host, port and path of a URL: no userinfo, query or fragment,
/// where an operator's control plane URL may carry a credential.
pub fn loggable_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => {
            let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!(
                "{}://{}{port}{}",
                parsed.scheme(),
                parsed.host_str().unwrap_or(""),
                parsed.path()
            )
        }
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

#[derive(Serialize)]
struct CallbackBody<'a> {
    action: &'static str,
    protocol: &'a str,
    app: &'a str,
    stream_key: &'a str,
    client_ip: String,
    request_id: &'a str,
}

/// What an allowing answer may say; anything else in it is ignored, so the
/// control plane can grow its answers without breaking us.
#[derive(Deserialize, Default)]
struct Allow {
    stream_id: Option<String>,
    app_id: Option<String>,
    profile: Option<String>,
    encrypt: Option<bool>,
    record: Option<bool>,
}

#[derive(Deserialize)]
struct Deny {
    reason: Option<String>,
}

/// `t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn sign_body(secret: &[u8], unix_time: u64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(unix_time.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={unix_time},v1={}", hex::encode(mac.finalize().into_bytes()))
}

enum Outcome {
    Allowed(Authorization),
    Denied(AuthDenial),
    /// No usable answer: the outage cache may step in.
    Outage(AuthDenial),
}

impl HttpAuthorizer {
    pub fn new(settings: HttpAuthSettings) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let cache = OutageCache::new(settings.cache_ttl);
        Ok(Self {
            log_url: loggable_url(settings.url.expose()),
            settings,
            client,
            cache,
        })
    }

    /// The control plane's URL without its credentials, for the start-up line.
    pub fn loggable_url(&self) -> &str {
        &self.log_url
    }

    async fn ask(&self, request: &PublishRequest, request_id: &str) -> Outcome {
        let body = CallbackBody {
            action: "publish",
            protocol: request.protocol,
            app: &request.app,
            stream_key: &request.stream_key,
            client_ip: request.client_addr.ip().to_string(),
            request_id,
        };
        let body = match serde_json::to_vec(&body) {
            Ok(body) => body,
            Err(e) => {
                return Outcome::Outage(AuthDenial::new(
                    DenyReason::CallbackUnreachable,
                    format!("cannot encode the auth request: {e}"),
                ))
            }
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let signature = sign_body(self.settings.secret.expose().as_bytes(), now, &body);
        let sent = self
            .client
            .post(self.settings.url.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(REQUEST_ID_HEADER, request_id)
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) if e.is_timeout() => {
                tracing::error!(request_id, url = %self.log_url, timeout_ms = self.settings.timeout.as_millis() as u64, "auth callback timed out: publish denied (fail closed)");
                return Outcome::Outage(AuthDenial::new(
                    DenyReason::CallbackTimeout,
                    "publish denied: control plane did not answer in time (fail closed)",
                ));
            }
            Err(e) => {
                // reqwest's message names the URL, credentials and all.
                let e = e.without_url();
                tracing::error!(request_id, url = %self.log_url, error = %e, "auth callback unreachable: publish denied (fail closed)");
                return Outcome::Outage(AuthDenial::new(
                    DenyReason::CallbackUnreachable,
                    "publish denied: control plane unreachable (fail closed)",
                ));
            }
        };
        let status = response.status();
        let answer = match read_capped(response).await {
            Ok(answer) => answer,
            Err(message) => {
                tracing::error!(request_id, %status, %message, "auth callback answer unreadable: publish denied (fail closed)");
                return Outcome::Outage(AuthDenial::new(
                    DenyReason::CallbackUnreachable,
                    "publish denied: control plane answer unreadable (fail closed)",
                ));
            }
        };
        if status.is_server_error() {
            tracing::error!(request_id, %status, "auth callback failed: publish denied (fail closed)");
            return Outcome::Outage(AuthDenial::new(
                DenyReason::CallbackUnreachable,
                format!(
                    "publish denied: control plane failed with HTTP {} (fail closed)",
                    status.as_u16()
                ),
            ));
        }
        if !status.is_success() {
            let reason = serde_json::from_slice::<Deny>(&answer)
                .ok()
                .and_then(|d| d.reason)
                .map(|r| sanitize_reason(&r))
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| format!("publish denied by the control plane (HTTP {})", status.as_u16()));
            tracing::info!(request_id, %status, %reason, "auth callback denied the publish");
            return Outcome::Denied(AuthDenial::new(DenyReason::CallbackDenied, reason));
        }
        let allow: Allow = match serde_json::from_slice(&answer) {
            Ok(allow) => allow,
            Err(e) => {
                tracing::error!(request_id, error = %e, "auth callback allowed with a body that is not a JSON object: publish denied");
                return Outcome::Denied(AuthDenial::new(
                    DenyReason::CallbackBadAnswer,
                    "publish denied: control plane answer is not valid JSON",
                ));
            }
        };
        match authorization(request, allow, &self.settings.stream_ids) {
            Ok(granted) => Outcome::Allowed(granted),
            Err(denial) => {
                tracing::error!(request_id, reason = %denial.message, "auth callback answer refused");
                Outcome::Denied(denial)
            }
        }
    }
}

fn authorization(request: &PublishRequest, allow: Allow, ids: &StreamIdKey) -> Result<Authorization, AuthDenial> {
    let bad = |what: &str| {
        AuthDenial::new(
            DenyReason::CallbackBadAnswer,
            format!("publish denied: control plane answered an invalid {what}"),
        )
    };
    let stream_id = match allow.stream_id {
        Some(id) if is_valid_stream_id(&id) => id,
        Some(_) => return Err(bad("stream_id")),
        None => ids.derive(&request.app, &request.stream_key),
    };
    let app_id = match allow.app_id {
        Some(id) if is_valid_stream_id(&id) => id,
        Some(_) => return Err(bad("app_id")),
        None if is_valid_stream_id(&request.app) => request.app.clone(),
        None => "external".to_owned(),
    };
    let ladder = match allow.profile {
        Some(profile) if crate::control::store::validate::profile_name(&profile).is_ok() => {
            LadderChoice::Profile(profile)
        }
        Some(_) => return Err(bad("profile")),
        None => LadderChoice::ServerDefault,
    };
    Ok(Authorization {
        stream_id,
        app_id,
        ladder,
        encrypt: allow.encrypt,
        key_rotation_segments: None,
        record: allow.record.unwrap_or(false),
        storage: super::StorageChoice::default(),
        max_streams: None,
        max_ingest_kbps: None,
    })
}

fn sanitize_reason(reason: &str) -> String {
    reason
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_REASON_CHARS)
        .collect::<String>()
        .trim()
        .to_owned()
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.without_url().to_string())? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(format!("answer larger than {MAX_ANSWER_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[async_trait]
impl PublishAuthorizer for HttpAuthorizer {
    async fn authorize(&self, request: &PublishRequest) -> Result<Authorization, AuthDenial> {
        let request_id = uuid::Uuid::new_v4().to_string();
        match self.ask(request, &request_id).await {
            Outcome::Allowed(granted) => {
                self.cache.remember(request, &granted);
                Ok(granted)
            }
            Outcome::Denied(denial) => {
                self.cache.forget(request);
                Err(denial)
            }
            Outcome::Outage(denial) => match self.cache.recall(request) {
                Some(granted) => {
                    tracing::warn!(
                        request_id,
                        stream_id = granted.stream_id,
                        "control plane unavailable: allowed from the outage cache"
                    );
                    Ok(granted)
                }
                None => Err(denial),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_over_time_dot_body() {
        // Known answer computed independently:
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
        let signed = sign_body(b"secret", 1_700_000_000, br#"{"a":1}"#);
        let expected = {
            let out = std::process::Command::new("openssl")
                .args(["dgst", "-sha256", "-hmac", "secret", "-r"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .and_then(|mut child| {
                    use std::io::Write;
                    child.stdin.take().expect("stdin").write_all(br#"1700000000.{"a":1}"#)?;
                    child.wait_with_output()
                })
                .expect("openssl");
            String::from_utf8(out.stdout)
                .expect("utf-8")
                .split_whitespace()
                .next()
                .expect("digest")
                .to_owned()
        };
        assert_eq!(signed, format!("t=1700000000,v1={expected}"));
    }

    fn request() -> PublishRequest {
        PublishRequest {
            protocol: "rtmp",
            app: "live".into(),
            stream_key: "k1".into(),
            client_addr: "10.0.0.1:4000".parse().expect("addr"),
            connection_id: 7,
        }
    }

    fn authorization(request: &PublishRequest, allow: Allow) -> Result<Authorization, AuthDenial> {
        super::authorization(request, allow, &StreamIdKey::new([1; 32], Default::default()))
    }

    #[test]
    fn answers_are_checked_before_they_become_paths() {
        let derived = authorization(&request(), Allow::default()).expect("allowed");
        assert!(derived.stream_id.starts_with("ext_") && is_valid_stream_id(&derived.stream_id));
        assert_eq!(
            derived.stream_id,
            authorization(&request(), Allow::default()).expect("same").stream_id
        );
        // Keyed: not SHA-256("live/k1"), which a guesser could recompute.
        assert_ne!(derived.stream_id, "ext_43eebfe7da3904e9");
        assert_eq!(derived.app_id, "live");
        for bad in ["../etc", "a/b", "", "x".repeat(65).as_str(), "sp ace"] {
            let allow = Allow {
                stream_id: Some(bad.into()),
                ..Allow::default()
            };
            assert_eq!(
                authorization(&request(), allow).expect_err(bad).reason,
                DenyReason::CallbackBadAnswer
            );
        }
        let allow = Allow {
            profile: Some("../../x".into()),
            ..Allow::default()
        };
        assert!(authorization(&request(), allow).is_err());
        let allow = Allow {
            stream_id: Some("cam-7".into()),
            profile: Some("small".into()),
            encrypt: Some(false),
            record: Some(true),
            app_id: Some("acme".into()),
        };
        let granted = authorization(&request(), allow).expect("allowed");
        assert_eq!((granted.stream_id.as_str(), granted.app_id.as_str()), ("cam-7", "acme"));
        assert_eq!(granted.ladder, LadderChoice::Profile("small".into()));
        assert_eq!((granted.encrypt, granted.record), (Some(false), true));
    }

    #[test]
    fn reasons_are_cleaned_and_capped() {
        assert_eq!(sanitize_reason("  key\r\n revoked\u{7} "), "key revoked");
        assert_eq!(sanitize_reason(&"x".repeat(1000)).len(), MAX_REASON_CHARS);
    }

    fn settings(url: &str) -> HttpAuthSettings {
        HttpAuthSettings {
            url: url.into(),
            secret: "s3cr3t-value".into(),
            timeout: Duration::from_secs(2),
            cache_ttl: Duration::ZERO,
            stream_ids: StreamIdKey::random(),
        }
    }

    #[test]
    fn the_secret_is_not_in_debug_output() {
        let settings = settings("http://user:url-pa55@127.0.0.1:9/auth?token=url-t0ken");
        let authorizer = HttpAuthorizer::new(settings.clone()).expect("client");
        for printed in [format!("{settings:?}"), format!("{authorizer:?}")] {
            for secret in ["s3cr3t-value", "url-pa55", "url-t0ken"] {
                assert!(!printed.contains(secret), "{secret} in {printed}");
            }
        }
    }

    #[test]
    fn urls_are_logged_without_credentials_query_or_fragment() {
        assert_eq!(
            loggable_url("https://user:pa55@cp.example:8443/auth/publish?token=t#f"),
            "https://cp.example:8443/auth/publish"
        );
        assert_eq!(loggable_url("http://cp.example/auth"), "http://cp.example/auth");
        assert_eq!(loggable_url("not a url pa55"), "<unparsable URL>");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_unreachable_callback_is_logged_without_its_credentials() {
        let captured = crate::logging::CapturedLog::start(tracing::Level::INFO);
        // Nothing listens on port 9 (discard): the connection is refused.
        let authorizer =
            HttpAuthorizer::new(settings("http://user:url-pa55@127.0.0.1:9/auth?token=url-t0ken")).expect("client");
        let denial = authorizer.authorize(&request()).await.expect_err("unreachable");
        assert_eq!(denial.reason, DenyReason::CallbackUnreachable);
        let log = captured.text();
        assert!(log.contains("auth callback unreachable"), "{log}");
        assert!(log.contains("http://127.0.0.1:9/auth"), "{log}");
        for secret in ["url-pa55", "url-t0ken", "user:"] {
            assert!(!log.contains(secret), "{secret} in {log}");
        }
    }
}

//! S3-compatible buckets through aws-sdk-s3: AWS S3, Cloudflare R2 and
//! anything else that speaks SigV4 (MinIO, s3s-fs in the tests).

use std::time::Duration;

use aws_config::environment::EnvironmentVariableRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::profile::ProfileFileRegionProvider;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    StalledStreamProtectionConfig,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use bytes::Bytes;
use futures::future::BoxFuture;

use super::{validate_key, ObjectMeta, ObjectStore, StorageError};

/// DeleteObjects takes at most this many keys per request.
const DELETE_BATCH: usize = 1000;

/// How to reach a bucket. Unset credentials come from the standard AWS chain
/// (environment, shared profile files, web identity, ECS/EC2 metadata).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct S3Settings {
    pub bucket: String,
    /// Prepended to every key ("media/" puts objects under `media/`).
    pub prefix: String,
    /// For S3-compatibles (R2: `https://<account>.r2.cloudflarestorage.com`).
    pub endpoint_url: Option<String>,
    /// `None` with an endpoint: `AWS_REGION`/`AWS_DEFAULT_REGION` or the
    /// profile's, else `auto` (what R2 expects); without one: the AWS chain's
    /// (instance metadata included), else `us-east-1`.
    pub region: Option<String>,
    /// Path-style URLs (`endpoint/bucket/key`), which most S3-compatibles need.
    pub force_path_style: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<crate::control::keys::Secret>,
    /// Per-attempt timeout of one request.
    pub timeout: Duration,
}

/// One bucket and prefix. Cheap to clone; clones share the HTTP client.
#[derive(Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    location: String,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store").field("location", &self.location).finish()
    }
}

impl S3Store {
    /// Builds the client. Nothing is sent yet: [`S3Store::check`] does that.
    pub async fn new(settings: &S3Settings) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let (Some(id), Some(secret)) = (&settings.access_key_id, &settings.secret_access_key) {
            loader =
                loader.credentials_provider(Credentials::new(id, secret.expose(), None, None, "pulse-edge config"));
        }
        match (&settings.region, &settings.endpoint_url) {
            (Some(region), _) => loader = loader.region(Region::new(region.clone())),
            // An S3-compatible (R2, MinIO) is not in an AWS region: the
            // environment or a profile may still name one, else R2's `auto`.
            // The instance metadata service is not asked: off AWS it only
            // times out (and logs a warning) at every start.
            (None, Some(_)) => {
                loader = loader.region(
                    RegionProviderChain::first_try(EnvironmentVariableRegionProvider::new())
                        .or_else(ProfileFileRegionProvider::new())
                        .or_else(Region::new("auto")),
                )
            }
            (None, None) => {}
        }
        let shared = loader.load().await;
        let region = shared.region().cloned().unwrap_or_else(|| Region::new("us-east-1"));
        let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .operation_attempt_timeout(settings.timeout)
            .build();
        let mut config = aws_sdk_s3::config::Builder::from(&shared)
            .region(region)
            .force_path_style(settings.force_path_style)
            // R2 (and other S3-compatibles) reject the CRC32 headers the SDK
            // adds by default; send and check checksums only where the API
            // requires one (DeleteObjects).
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .timeout_config(timeouts)
            // Our uploader retries with its own backoff and knows which
            // objects are still worth it; one SDK retry covers a dropped
            // keep-alive connection.
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(2))
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled());
        if let Some(endpoint) = &settings.endpoint_url {
            config = config.endpoint_url(endpoint);
        }
        let endpoint = settings.endpoint_url.clone().unwrap_or_else(|| "AWS S3".to_string());
        Self {
            client: aws_sdk_s3::Client::from_conf(config.build()),
            bucket: settings.bucket.clone(),
            prefix: normalize_prefix(&settings.prefix),
            location: format!(
                "s3://{}/{} at {endpoint}",
                settings.bucket,
                normalize_prefix(&settings.prefix)
            ),
        }
    }

    /// The same client aimed at another bucket and prefix (an app's own).
    pub fn with_target(&self, bucket: &str, prefix: &str) -> Self {
        let endpoint = self.location.rsplit_once(" at ").map_or("", |(_, e)| e);
        Self {
            client: self.client.clone(),
            bucket: bucket.to_string(),
            prefix: normalize_prefix(prefix),
            location: format!("s3://{bucket}/{} at {endpoint}", normalize_prefix(prefix)),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Fails fast at start-up: the bucket must exist and the credentials
    /// must be accepted. The error names the bucket and the endpoint.
    pub async fn check(&self) -> Result<(), StorageError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("HeadBucket", "", e))
    }

    /// A request we could not even build (never worth retrying).
    fn refused(&self, op: &'static str, key: &str, message: String) -> StorageError {
        StorageError::Remote {
            op,
            key: key.to_string(),
            location: self.location.clone(),
            retryable: false,
            message,
        }
    }

    fn object_key(&self, key: &str) -> Result<String, StorageError> {
        validate_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }

    fn error<E, R>(&self, op: &'static str, key: &str, err: SdkError<E, R>) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + HasStatus,
    {
        let status = err.raw_response().map(HasStatus::status);
        let retryable = match &err {
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
            SdkError::ServiceError(_) => status.is_some_and(|s| s >= 500 || s == 429 || s == 408),
            _ => false,
        };
        let message = match (status, err.code()) {
            (Some(status), Some(code)) => format!("HTTP {status} {code}: {}", err.message().unwrap_or("")),
            (Some(404), None) => "HTTP 404: no such bucket".to_string(),
            (Some(403), None) => "HTTP 403: access denied (check the credentials)".to_string(),
            (Some(status), None) => format!("HTTP {status}"),
            _ => DisplayErrorContext(&err).to_string(),
        };
        StorageError::Remote {
            op,
            key: key.to_string(),
            location: self.location.clone(),
            retryable,
            message,
        }
    }
}

/// Lets [`S3Store::error`] read the status of any raw response type.
trait HasStatus {
    fn status(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

/// "media" and "media/" both mean objects under `media/`; "" means the bucket root.
fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("{trimmed}/")
    }
}

impl ObjectStore for S3Store {
    fn put(&self, key: String, data: Bytes, meta: ObjectMeta) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(async move {
            let object = self.object_key(&key)?;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(object)
                .body(ByteStream::from(data))
                .content_type(meta.content_type)
                .cache_control(meta.cache_control)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| self.error("PutObject", &key, e))
        })
    }

    fn delete(&self, keys: Vec<String>) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(async move {
            let objects = keys.iter().map(|k| self.object_key(k)).collect::<Result<Vec<_>, _>>()?;
            for batch in objects.chunks(DELETE_BATCH) {
                let first = batch.first().cloned().unwrap_or_default();
                let identifiers = batch
                    .iter()
                    .map(|key| ObjectIdentifier::builder().key(key).build())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| self.refused("DeleteObjects", &first, e.to_string()))?;
                let delete = Delete::builder()
                    .set_objects(Some(identifiers))
                    .quiet(true)
                    .build()
                    .map_err(|e| self.refused("DeleteObjects", &first, e.to_string()))?;
                let output = self
                    .client
                    .delete_objects()
                    .bucket(&self.bucket)
                    .delete(delete)
                    .send()
                    .await
                    .map_err(|e| self.error("DeleteObjects", &first, e))?;
                // A batch answers 200 with per-key errors.
                if let Some(failed) = output.errors().first() {
                    return Err(StorageError::Remote {
                        op: "DeleteObjects",
                        key: failed.key().unwrap_or(&first).to_string(),
                        location: self.location.clone(),
                        retryable: failed.code().is_some_and(|c| c == "InternalError" || c == "SlowDown"),
                        message: format!(
                            "{} of {} keys not deleted: {} {}",
                            output.errors().len(),
                            batch.len(),
                            failed.code().unwrap_or("?"),
                            failed.message().unwrap_or("")
                        ),
                    });
                }
            }
            Ok(())
        })
    }

    fn get(&self, key: String) -> BoxFuture<'_, Result<Option<Bytes>, StorageError>> {
        Box::pin(async move {
            let object = self.object_key(&key)?;
            let output = match self.client.get_object().bucket(&self.bucket).key(object).send().await {
                Ok(output) => output,
                Err(SdkError::ServiceError(e)) if e.err().is_no_such_key() => return Ok(None),
                Err(e) => return Err(self.error("GetObject", &key, e)),
            };
            let body = output.body.collect().await.map_err(|e| StorageError::Remote {
                op: "GetObject",
                key: key.clone(),
                location: self.location.clone(),
                retryable: true,
                message: e.to_string(),
            })?;
            Ok(Some(body.into_bytes()))
        })
    }

    fn describe(&self) -> String {
        self.location.clone()
    }

    fn stores_parts(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_normalise_to_a_trailing_slash_or_nothing() {
        assert_eq!(normalize_prefix(""), "");
        assert_eq!(normalize_prefix("/"), "");
        assert_eq!(normalize_prefix("media"), "media/");
        assert_eq!(normalize_prefix("/media/live/"), "media/live/");
    }

    #[test]
    fn settings_debug_holds_no_secret_key() {
        let settings = S3Settings {
            bucket: "b".into(),
            access_key_id: Some("AKIAEXAMPLE".into()),
            secret_access_key: Some("wJalrXUtnFEMI-secret".into()),
            ..S3Settings::default()
        };
        assert!(!format!("{settings:?}").contains("wJalrXUtnFEMI-secret"));
    }

    #[tokio::test]
    async fn keys_are_validated_and_prefixed() {
        let store = S3Store::new(&S3Settings {
            bucket: "b".into(),
            prefix: "p".into(),
            endpoint_url: Some("http://127.0.0.1:9".into()),
            access_key_id: Some("a".into()),
            secret_access_key: Some("s".into()),
            timeout: Duration::from_secs(1),
            ..S3Settings::default()
        })
        .await;
        assert_eq!(store.object_key("s/720p/1.mp4").expect("valid"), "p/s/720p/1.mp4");
        assert!(matches!(store.object_key("../x"), Err(StorageError::InvalidKey { .. })));
        assert_eq!(store.describe(), "s3://b/p/ at http://127.0.0.1:9");
        let other = store.with_target("c", "");
        assert_eq!(other.describe(), "s3://c/ at http://127.0.0.1:9");
    }

    #[tokio::test]
    async fn an_s3_compatible_without_a_region_gets_auto_not_the_metadata_service() {
        let settings = S3Settings {
            bucket: "b".into(),
            endpoint_url: Some("http://127.0.0.1:9".into()),
            access_key_id: Some("a".into()),
            secret_access_key: Some("s".into()),
            ..S3Settings::default()
        };
        let store = S3Store::new(&settings).await;
        // The environment may name a region (it wins); without one, R2's `auto`.
        let expected = ["AWS_REGION", "AWS_DEFAULT_REGION"]
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(|| "auto".to_string());
        assert_eq!(
            store.client.config().region().map(|r| r.as_ref()),
            Some(expected.as_str())
        );
        let named = S3Store::new(&S3Settings {
            region: Some("eu-west-3".into()),
            ..settings
        })
        .await;
        assert_eq!(named.client.config().region().map(|r| r.as_ref()), Some("eu-west-3"));
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_a_retryable_error_naming_the_bucket() {
        let store = S3Store::new(&S3Settings {
            bucket: "media".into(),
            endpoint_url: Some("http://127.0.0.1:9".into()),
            force_path_style: true,
            access_key_id: Some("a".into()),
            secret_access_key: Some("s".into()),
            timeout: Duration::from_secs(2),
            ..S3Settings::default()
        })
        .await;
        let err = store.check().await.expect_err("nothing listens on port 9");
        assert!(err.is_retryable(), "{err}");
        let text = err.to_string();
        assert!(text.contains("s3://media/") && text.contains("127.0.0.1:9"), "{text}");
    }
}

//! The `aws` KMS provider: AWS KMS (or a KMS-compatible service) through aws-sdk-kms.
//!
//! A region's key is any reference KMS accepts (key id, ARN, `alias/…`). Wrapping is KMS
//! `Encrypt` of the 32-byte data key with the encryption context
//! `{"coffer:tenant": tenant, "coffer:secret": name}`; the wrapped key records the ARN of the
//! key KMS actually used, so after an alias is pointed at a new key the old wraps are known to
//! be stale and `Decrypt` names the exact key. `current_key` is `DescribeKey` of the reference.
//!
//! Every call has retries with exponential backoff and a deadline (connect, per attempt and
//! overall). One rustls + ring HTTPS client serves plain `http://` endpoints too (moto, local
//! KMS-compatible services). Credentials come from the standard AWS chain (environment,
//! profile, web identity, container, instance metadata) unless the config gives static ones.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kms::config::retry::RetryConfig;
use aws_sdk_kms::config::timeout::TimeoutConfig;
use aws_sdk_kms::config::BehaviorVersion;
use aws_sdk_kms::config::Credentials;
use aws_sdk_kms::config::Region;
use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::error::SdkError;
use aws_sdk_kms::primitives::Blob;
use zeroize::Zeroize;

use super::KeyContext;
use super::KeyRef;
use super::Kms;
use super::KmsError;
use crate::crypto::DataKey;
use crate::pb;

pub const PROVIDER: &str = "aws";

/// How to reach one region's AWS KMS.
#[derive(Clone)]
pub struct AwsSettings {
    /// The AWS region of the key, e.g. `us-east-1`.
    pub aws_region: String,
    /// Endpoint override (moto, a VPC endpoint, a KMS-compatible service).
    pub endpoint: Option<String>,
    /// Static credentials; `None` uses the standard AWS credential chain.
    pub static_credentials: Option<(String, String)>,
    /// Deadline of one call, retries included.
    pub call_timeout: Duration,
}

impl fmt::Debug for AwsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsSettings")
            .field("aws_region", &self.aws_region)
            .field("endpoint", &self.endpoint)
            .field(
                "static_credentials",
                &self.static_credentials.as_ref().map(|(id, _)| (id, "[redacted]")),
            )
            .field("call_timeout", &self.call_timeout)
            .finish()
    }
}

/// A KMS client for these settings.
pub async fn client(s: &AwsSettings) -> aws_sdk_kms::Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let attempt = (s.call_timeout / 2).max(Duration::from_millis(200));
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(s.aws_region.clone()))
        .http_client(http)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(50))
                .with_max_backoff(Duration::from_secs(1)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(attempt.min(Duration::from_secs(2)))
                .operation_attempt_timeout(attempt)
                .operation_timeout(s.call_timeout)
                .build(),
        );
    if let Some(url) = &s.endpoint {
        loader = loader.endpoint_url(url);
    }
    if let Some((id, secret)) = &s.static_credentials {
        loader = loader.credentials_provider(Credentials::new(id, secret, None, None, "coffer-config"));
    }
    aws_sdk_kms::Client::new(&loader.load().await)
}

pub struct AwsKms {
    region: String,
    key_ref: String,
    client: aws_sdk_kms::Client,
}

impl AwsKms {
    /// A provider for Coffer region `region` whose key is `key_ref`. Makes no call yet.
    pub async fn new(region: &str, key_ref: &str, settings: &AwsSettings) -> Self {
        Self {
            region: region.to_string(),
            key_ref: key_ref.to_string(),
            client: client(settings).await,
        }
    }

    fn context(ctx: &KeyContext) -> HashMap<String, String> {
        HashMap::from([
            ("coffer:tenant".to_string(), ctx.tenant.clone()),
            ("coffer:secret".to_string(), ctx.name.clone()),
        ])
    }

    fn error<E: ProvideErrorMetadata + std::error::Error + 'static, R: fmt::Debug>(
        &self,
        key: &str,
        e: SdkError<E, R>,
    ) -> KmsError {
        let (unavailable, reason) = classify(&e);
        let (region, provider, key) = (self.region.clone(), PROVIDER.to_string(), key.to_string());
        if unavailable {
            KmsError::Unavailable {
                region,
                provider,
                key,
                reason,
            }
        } else {
            KmsError::Refused {
                region,
                provider,
                key,
                reason,
            }
        }
    }

    fn refused(&self, reason: &str) -> KmsError {
        KmsError::Refused {
            region: self.region.clone(),
            provider: PROVIDER.into(),
            key: self.key_ref.clone(),
            reason: reason.into(),
        }
    }
}

/// Whether a failed call may succeed later (unavailable) or was refused, and a one-line reason.
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static, R: fmt::Debug>(
    e: &SdkError<E, R>,
) -> (bool, String) {
    match e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            let code = err.code().unwrap_or("UnknownError");
            let retryable = matches!(
                code,
                "KMSInternalException"
                    | "DependencyTimeoutException"
                    | "ThrottlingException"
                    | "LimitExceededException"
                    | "ServiceUnavailableException"
                    | "InternalFailure"
            );
            let msg = err.message().unwrap_or("");
            (retryable, format!("{code}: {}", one_line(msg)))
        }
        SdkError::TimeoutError(_) => (true, "timed out".into()),
        SdkError::DispatchFailure(d) => (
            true,
            format!(
                "cannot reach the endpoint: {}",
                d.as_connector_error()
                    .map(|c| root_cause(c))
                    .unwrap_or_else(|| "dispatch failure".into())
            ),
        ),
        SdkError::ResponseError(_) => (true, "unreadable response".into()),
        other => (
            false,
            one_line(&aws_sdk_kms::error::DisplayErrorContext(other).to_string()),
        ),
    }
}

/// The innermost cause's message ("connection refused", "connection closed before message
/// completed"), which is the part an operator can act on.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    one_line(&cur.to_string())
}

fn one_line(s: &str) -> String {
    let s = s.replace(['\n', '\r'], " ");
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

#[async_trait]
impl Kms for AwsKms {
    fn region(&self) -> &str {
        &self.region
    }

    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn key_ref(&self) -> &str {
        &self.key_ref
    }

    async fn wrap(&self, dek: &DataKey, ctx: &KeyContext) -> Result<pb::WrappedKey, KmsError> {
        let out = self
            .client
            .encrypt()
            .key_id(&self.key_ref)
            .plaintext(Blob::new(dek.expose().to_vec()))
            .set_encryption_context(Some(Self::context(ctx)))
            .send()
            .await
            .map_err(|e| self.error(&self.key_ref, e))?;
        let blob = out
            .ciphertext_blob
            .ok_or_else(|| self.refused("Encrypt returned no ciphertext"))?
            .into_inner();
        let key_id = out.key_id.ok_or_else(|| self.refused("Encrypt returned no key id"))?;
        Ok(pb::WrappedKey {
            region: self.region.clone(),
            provider: PROVIDER.into(),
            key_id,
            key_version: 0,
            blob,
        })
    }

    async fn unwrap(&self, wrapped: &pb::WrappedKey, ctx: &KeyContext) -> Result<DataKey, KmsError> {
        if wrapped.region != self.region || wrapped.provider != PROVIDER {
            return Err(self.refused("wrapped key belongs to another region or provider"));
        }
        let out = self
            .client
            .decrypt()
            .key_id(&wrapped.key_id)
            .ciphertext_blob(Blob::new(wrapped.blob.clone()))
            .set_encryption_context(Some(Self::context(ctx)))
            .send()
            .await
            .map_err(|e| {
                // Name the key as configured, and the exact key when that is another.
                let key = if wrapped.key_id == self.key_ref {
                    self.key_ref.clone()
                } else {
                    format!("{} ({})", self.key_ref, wrapped.key_id)
                };
                self.error(&key, e)
            })?;
        let mut plain = out
            .plaintext
            .ok_or_else(|| self.refused("Decrypt returned no plaintext"))?
            .into_inner();
        let key = DataKey::from_bytes(&plain).map_err(|e| self.refused(&e.to_string()));
        plain.zeroize();
        key
    }

    async fn current_key(&self) -> Result<KeyRef, KmsError> {
        let out = self
            .client
            .describe_key()
            .key_id(&self.key_ref)
            .send()
            .await
            .map_err(|e| self.error(&self.key_ref, e))?;
        let meta = out
            .key_metadata
            .ok_or_else(|| self.refused("DescribeKey returned no key"))?;
        if !meta.enabled {
            return Err(self.refused(&format!(
                "key {} is not enabled (state {:?})",
                meta.arn.as_deref().unwrap_or(&meta.key_id),
                meta.key_state.as_ref().map(|s| s.as_str()).unwrap_or("unknown")
            )));
        }
        Ok(KeyRef {
            key_id: meta.arn.unwrap_or(meta.key_id),
            key_version: 0,
        })
    }
}

/// Makes `alias` name a key in the settings' region, creating a symmetric key for it when the
/// alias does not exist yet. Returns the key's ARN. For `coffer dev --kms aws` and tests.
pub async fn ensure_alias(s: &AwsSettings, alias: &str) -> Result<String, String> {
    let c = client(s).await;
    if let Ok(out) = c.describe_key().key_id(alias).send().await {
        if let Some(arn) = out.key_metadata.and_then(|m| m.arn) {
            return Ok(arn);
        }
    }
    let arn = create_key_with(&c, s, &format!("coffer {alias}")).await?;
    c.create_alias()
        .alias_name(alias)
        .target_key_id(&arn)
        .send()
        .await
        .map_err(|e| format!("CreateAlias {alias}: {}", classify(&e).1))?;
    Ok(arn)
}

/// Creates a symmetric encryption key; returns its ARN.
pub async fn create_key(s: &AwsSettings, description: &str) -> Result<String, String> {
    create_key_with(&client(s).await, s, description).await
}

async fn create_key_with(c: &aws_sdk_kms::Client, s: &AwsSettings, description: &str) -> Result<String, String> {
    let out = c
        .create_key()
        .description(description)
        .send()
        .await
        .map_err(|e| format!("CreateKey in {}: {}", s.aws_region, classify(&e).1))?;
    out.key_metadata
        .and_then(|m| m.arn)
        .ok_or_else(|| "CreateKey returned no ARN".to_string())
}

/// Points an existing alias at another key (manual key rotation, the AWS way).
pub async fn update_alias(s: &AwsSettings, alias: &str, key_arn: &str) -> Result<(), String> {
    client(s)
        .await
        .update_alias()
        .alias_name(alias)
        .target_key_id(key_arn)
        .send()
        .await
        .map_err(|e| format!("UpdateAlias {alias}: {}", classify(&e).1))?;
    Ok(())
}

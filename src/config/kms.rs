//! `[[regions]]` and `[kms]`: each region's KMS key, and how KMS calls, the DEK cache and rewrap behave.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionKms {
    pub name: String,
    /// "local" (file keyring) or "aws" (AWS KMS or a KMS-compatible service).
    #[serde(default = "default_provider")]
    pub kms_provider: String,
    /// Key reference: for `local` always `local/<region>` (the default); for `aws` a key id,
    /// ARN or `alias/…` (required).
    #[serde(default)]
    pub key_id: Option<String>,
    /// `aws`: the AWS region of the key, e.g. `us-east-1` (required).
    #[serde(default)]
    pub aws_region: Option<String>,
    /// `aws`: endpoint override (a VPC endpoint, moto, a KMS-compatible service).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `aws`: static credentials (both or neither); unset uses the standard AWS chain
    /// (environment, profile, web identity, container or instance role).
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<ConfigSecret>,
}

/// A secret in a config file: deserialized like a string, never printed.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct ConfigSecret(String);

impl ConfigSecret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ConfigSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl RegionKms {
    pub(super) fn validate(&self) -> Result<(), String> {
        let r = &self.name;
        let aws_only = [
            ("aws_region", self.aws_region.is_some()),
            ("endpoint", self.endpoint.is_some()),
            ("access_key_id", self.access_key_id.is_some()),
            ("secret_access_key", self.secret_access_key.is_some()),
        ];
        match self.kms_provider.as_str() {
            "local" => {
                if let Some((field, _)) = aws_only.iter().find(|(_, set)| *set) {
                    return Err(format!("region {r}: {field} is only for kms_provider = \"aws\""));
                }
                let expected = crate::crypto::kms::local::key_id(r);
                if self.key_id.as_ref().is_some_and(|k| *k != expected) {
                    return Err(format!(
                        "region {r}: the local provider's key is always {expected:?}; remove key_id"
                    ));
                }
            }
            "aws" => {
                if self.key_id.as_deref().unwrap_or("").is_empty() {
                    return Err(format!(
                        "region {r}: kms_provider = \"aws\" needs key_id (a key id, ARN or alias/NAME)"
                    ));
                }
                match self.aws_region.as_deref() {
                    Some(a)
                        if !a.is_empty()
                            && a.bytes()
                                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') => {}
                    _ => {
                        return Err(format!(
                            "region {r}: kms_provider = \"aws\" needs aws_region, e.g. \"us-east-1\""
                        ))
                    }
                }
                if let Some(e) = &self.endpoint {
                    if !(e.starts_with("http://") || e.starts_with("https://")) {
                        return Err(format!(
                            "region {r}: endpoint {e:?} must start with http:// or https://"
                        ));
                    }
                }
                if self.access_key_id.is_some() != self.secret_access_key.is_some() {
                    return Err(format!(
                        "region {r}: give both access_key_id and secret_access_key, or neither to use the AWS credential chain"
                    ));
                }
            }
            other => {
                return Err(format!(
                    "region {r}: kms_provider {other:?} is not supported (use \"local\" or \"aws\")"
                ))
            }
        }
        Ok(())
    }

    /// Settings of the `aws` provider (None for other providers).
    pub fn aws_settings(&self, call_timeout: Duration) -> Option<crate::crypto::kms::aws::AwsSettings> {
        (self.kms_provider == "aws").then(|| crate::crypto::kms::aws::AwsSettings {
            aws_region: self.aws_region.clone().unwrap_or_default(),
            endpoint: self.endpoint.clone(),
            static_credentials: self
                .access_key_id
                .clone()
                .zip(self.secret_access_key.as_ref().map(|s| s.expose().to_string())),
            call_timeout,
        })
    }
}

fn default_provider() -> String {
    "local".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmsConfig {
    /// Folder of `<region>.keyring` files for the `local` provider.
    pub local_keyring_dir: Option<PathBuf>,
    /// Create a missing local keyring instead of refusing to start (dev only).
    #[serde(default)]
    pub create_missing_keyrings: bool,
    #[serde(default = "default_dek_cache_ttl")]
    pub dek_cache_ttl_secs: u64,
    #[serde(default = "default_dek_cache_capacity")]
    pub dek_cache_capacity: usize,
    /// "deny" (default): a read whose data key is not cached fails with UNAVAILABLE when the
    /// local region's KMS cannot unwrap it. "allow": it is unwrapped by another region's KMS
    /// (counted in `coffer_kms_fallback_total`); the data key then crosses regions.
    #[serde(default = "default_fallback")]
    pub fallback: String,
    /// Deadline of one KMS call, retries included.
    #[serde(default = "default_kms_call_timeout")]
    pub call_timeout_ms: u64,
    /// After a KMS call fails, that region's KMS is skipped this long before it is tried again.
    #[serde(default = "default_retry_unhealthy_after")]
    pub retry_unhealthy_after_ms: u64,
    /// How often the leader looks for versions missing a region's wrap and adds them.
    #[serde(default = "default_rewrap_interval")]
    pub rewrap_interval_ms: u64,
}

impl KmsConfig {
    pub fn policy(&self) -> crate::crypto::kms::KmsPolicy {
        crate::crypto::kms::KmsPolicy {
            call_timeout: Duration::from_millis(self.call_timeout_ms),
            retry_unhealthy_after: Duration::from_millis(self.retry_unhealthy_after_ms),
            fallback: self.fallback == "allow",
        }
    }
}

fn default_fallback() -> String {
    "deny".into()
}
fn default_kms_call_timeout() -> u64 {
    3000
}
fn default_retry_unhealthy_after() -> u64 {
    5000
}
fn default_rewrap_interval() -> u64 {
    30_000
}

impl Default for KmsConfig {
    fn default() -> Self {
        Self {
            local_keyring_dir: None,
            create_missing_keyrings: false,
            dek_cache_ttl_secs: default_dek_cache_ttl(),
            dek_cache_capacity: default_dek_cache_capacity(),
            fallback: default_fallback(),
            call_timeout_ms: default_kms_call_timeout(),
            retry_unhealthy_after_ms: default_retry_unhealthy_after(),
            rewrap_interval_ms: default_rewrap_interval(),
        }
    }
}

fn default_dek_cache_ttl() -> u64 {
    300
}
fn default_dek_cache_capacity() -> usize {
    100_000
}

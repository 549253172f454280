//! KMS providers behind one trait, one KMS per region.
//!
//! Every version's data key is wrapped under every region's key ([`KmsSet::wrap_all`]); a read
//! unwraps with the local region's key ([`KmsSet::unwrap_local`]). Providers: [`local`] (file
//! keyring per region). Others (AWS KMS, the simulated KMS) plug in through [`Kms`].

pub mod local;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::DataKey;
use crate::pb;

/// What a wrapped key is bound to besides its region's key: the tenant and the secret name.
/// Providers feed it into their encryption context / AAD, so a wrapped key copied to another
/// secret does not unwrap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyContext {
    pub tenant: String,
    pub name: String,
}

impl KeyContext {
    pub fn for_secret(name: &str) -> Self {
        Self {
            tenant: coffer_raft::names::tenant(name).to_string(),
            name: name.to_string(),
        }
    }

    /// Canonical bytes: `tenant \0 name`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.tenant.len() + self.name.len() + 1);
        b.extend_from_slice(self.tenant.as_bytes());
        b.push(0);
        b.extend_from_slice(self.name.as_bytes());
        b
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KmsError {
    #[error("KMS {provider} for region {region} (key {key}) is unavailable: {reason}")]
    Unavailable {
        region: String,
        provider: String,
        key: String,
        reason: String,
    },
    #[error("KMS {provider} for region {region} (key {key}) refused: {reason}")]
    Refused {
        region: String,
        provider: String,
        key: String,
        reason: String,
    },
    #[error("no KMS is configured for region {0}")]
    NoRegion(String),
    #[error("version has no data key wrapped for region {0}")]
    NoWrap(String),
}

/// One region's KMS key.
#[async_trait]
pub trait Kms: Send + Sync + 'static {
    fn region(&self) -> &str;
    fn provider(&self) -> &'static str;
    fn key_id(&self) -> &str;
    /// Wraps `dek` under this region's current key version.
    async fn wrap(&self, dek: &DataKey, ctx: &KeyContext) -> Result<pb::WrappedKey, KmsError>;
    /// Unwraps a key this provider wrapped (any key version it still holds).
    async fn unwrap(&self, wrapped: &pb::WrappedKey, ctx: &KeyContext) -> Result<DataKey, KmsError>;
}

/// The KMS of every region, and which one is local.
pub struct KmsSet {
    local_region: String,
    regions: BTreeMap<String, Arc<dyn Kms>>,
}

impl KmsSet {
    pub fn new(local_region: &str, kms: Vec<Arc<dyn Kms>>) -> Result<Self, KmsError> {
        let regions: BTreeMap<String, Arc<dyn Kms>> = kms.into_iter().map(|k| (k.region().to_string(), k)).collect();
        if !regions.contains_key(local_region) {
            return Err(KmsError::NoRegion(local_region.to_string()));
        }
        Ok(Self {
            local_region: local_region.to_string(),
            regions,
        })
    }

    pub fn local_region(&self) -> &str {
        &self.local_region
    }

    pub fn regions(&self) -> impl Iterator<Item = &Arc<dyn Kms>> {
        self.regions.values()
    }

    /// Wraps `dek` under every region's key. Fails naming the first region that failed.
    pub async fn wrap_all(&self, dek: &DataKey, ctx: &KeyContext) -> Result<Vec<pb::WrappedKey>, KmsError> {
        let mut out = Vec::with_capacity(self.regions.len());
        for kms in self.regions.values() {
            out.push(kms.wrap(dek, ctx).await?);
        }
        Ok(out)
    }

    /// Unwraps the data key of `env` with the local region's KMS.
    pub async fn unwrap_local(&self, env: &pb::Envelope, ctx: &KeyContext) -> Result<DataKey, KmsError> {
        let kms = self
            .regions
            .get(&self.local_region)
            .ok_or_else(|| KmsError::NoRegion(self.local_region.clone()))?;
        let wrapped = env
            .wrapped_keys
            .iter()
            .find(|w| w.region == self.local_region)
            .ok_or_else(|| KmsError::NoWrap(self.local_region.clone()))?;
        kms.unwrap(wrapped, ctx).await
    }
}

//! Identities and the one authorization seam.
//!
//! Every API call goes through [`Access::check`]: it resolves the principal from the bearer
//! token, decides with [`Access::authorize`], and emits one audit event, allowed or denied.
//! Handlers can only reach the secrets model with the [`Grant`] it returns, and a `Grant` cannot
//! be built anywhere else, so no call path bypasses the seam.
//!
//! This release knows one identity, the bootstrap root token (stored as a SHA-256 hash in the
//! replicated state). The policy engine replaces `authorize` without changing call sites.

use std::fmt;
use std::sync::Arc;

use sha2::Digest;
use sha2::Sha256;
use tonic::metadata::MetadataMap;

use crate::audit::AuditEvent;
use crate::audit::AuditSink;
use crate::error::ApiError;
use crate::raft::query;
use crate::raft::state_machine::StateReader;

/// Token prefix, so leaked tokens are easy to recognise and scan for.
pub const TOKEN_PREFIX: &str = "cft_";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    SecretsRead,
    SecretsWrite,
    SecretsRotate,
    SecretsAdmin,
    SecretsReadBreakGlass,
    PolicyAdmin,
    ClusterAdmin,
    AuditRead,
    DrillRun,
    /// Node health: allowed to anyone, token or not (load balancers), and still audited.
    Health,
}

impl Action {
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::SecretsRead => "secrets:read",
            Action::SecretsWrite => "secrets:write",
            Action::SecretsRotate => "secrets:rotate",
            Action::SecretsAdmin => "secrets:admin",
            Action::SecretsReadBreakGlass => "secrets:read-break-glass",
            Action::PolicyAdmin => "policy:admin",
            Action::ClusterAdmin => "cluster:admin",
            Action::AuditRead => "audit:read",
            Action::DrillRun => "drill:run",
            Action::Health => "health:read",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: String,
}

/// Proof that one request was authenticated, authorized and audited for `action` on `resource`.
#[derive(Debug, Clone)]
pub struct Grant {
    principal: Principal,
    action: Action,
    resource: String,
    request_id: String,
}

impl Grant {
    pub fn principal(&self) -> &Principal {
        &self.principal
    }
    pub fn action(&self) -> Action {
        self.action
    }
    pub fn resource(&self) -> &str {
        &self.resource
    }
    pub fn request_id(&self) -> &str {
        &self.request_id
    }
}

/// Generates a new token: `cft_` + 64 hex characters (256 random bits).
pub fn new_token() -> Result<String, crate::crypto::CryptoError> {
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        hex::encode(crate::crypto::random_bytes::<32>()?)
    ))
}

pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Where the request came from and which node serves it, for the audit record.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    pub source: String,
}

pub struct Access {
    state: StateReader,
    audit: Arc<dyn AuditSink>,
    node: String,
    region: String,
}

impl Access {
    pub fn new(state: StateReader, audit: Arc<dyn AuditSink>, node: String, region: String) -> Self {
        Self {
            state,
            audit,
            node,
            region,
        }
    }

    /// The seam: authenticate, authorize and audit one request.
    pub fn check(
        &self,
        meta: &MetadataMap,
        info: &RequestInfo,
        action: Action,
        resource: &str,
    ) -> Result<Grant, ApiError> {
        let request_id = crate::crypto::random_bytes::<16>()
            .map(hex::encode)
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let (principal, decision) = match self.authenticate(meta) {
            Ok(p) => {
                let d = self.authorize(&p, action, resource);
                (p.id.clone(), d.map(|reason| (p, reason)))
            }
            Err(_) if action == Action::Health => {
                let p = Principal { id: "anonymous".into() };
                (
                    "anonymous".to_string(),
                    Ok((p, "health is open to everyone".to_string())),
                )
            }
            Err(e) => ("anonymous".to_string(), Err(e)),
        };
        let (verdict, reason) = match &decision {
            Ok((_, reason)) => ("allow", reason.clone()),
            Err(e) => ("deny", e.to_string()),
        };
        self.audit
            .record(&AuditEvent {
                time_ms: crate::time::now_ms(),
                node: self.node.clone(),
                region: self.region.clone(),
                principal,
                action: action.as_str().to_string(),
                resource: resource.to_string(),
                decision: verdict.to_string(),
                reason,
                request_id: request_id.clone(),
                source: info.source.clone(),
            })
            .map_err(|e| ApiError::Unavailable(format!("{e}; the request was refused")))?;
        let (principal, _) = decision?;
        Ok(Grant {
            principal,
            action,
            resource: resource.to_string(),
            request_id,
        })
    }

    fn authenticate(&self, meta: &MetadataMap) -> Result<Principal, ApiError> {
        let header = meta
            .get("authorization")
            .ok_or_else(|| ApiError::Unauthenticated("missing token: set COFFER_TOKEN or pass --token".into()))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::Unauthenticated("malformed authorization header; expected \"Bearer <token>\"".into())
            })?;
        let cluster = {
            let view = self.state.view();
            query::cluster_info(&*view).map_err(ApiError::from)?
        };
        let Some(cluster) = cluster else {
            return Err(ApiError::Unavailable(
                "the cluster is not bootstrapped yet; wait for the bootstrap node".into(),
            ));
        };
        if constant_time_eq(&token_hash(token), &cluster.root_token_sha256) {
            return Ok(Principal { id: "root".into() });
        }
        Err(ApiError::Unauthenticated("invalid token: check COFFER_TOKEN".into()))
    }

    /// Decides whether `principal` may do `action` on `resource`. Returns the deciding rule.
    fn authorize(&self, principal: &Principal, action: Action, _resource: &str) -> Result<String, ApiError> {
        if action == Action::Health {
            return Ok("health is open to everyone".into());
        }
        if principal.id == "root" {
            return Ok("root token".into());
        }
        Err(ApiError::PermissionDenied(format!(
            "{} may not {} (no policy allows it)",
            principal.id, action
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_look_right_and_hash_stably() {
        let t = new_token().unwrap();
        assert!(t.starts_with(TOKEN_PREFIX) && t.len() == 4 + 64);
        assert_eq!(token_hash(&t), token_hash(&t));
        assert_ne!(token_hash(&t), token_hash(&new_token().unwrap()));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}

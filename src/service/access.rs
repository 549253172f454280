//! Access records as this replica holds them (policies and tokens, never token values), and
//! the checks on them that a handler needs before it proposes a change.
//!
//! These read the local replica with no consistency wait: the seam decides on the same local
//! state, and the leader checks every change again when it applies it.

use coffer_model::access_records;

use super::Service;
use crate::authz::policy;
use crate::authz::Action;
use crate::error::ApiError;
use crate::pb;

impl Service {
    /// Every policy, in name order.
    pub fn policies_here(&self) -> Result<Vec<pb::Policy>, ApiError> {
        Ok(access_records::policies(&*self.raft.reader().view())?)
    }

    /// The policy `name`, if this replica has it.
    pub fn policy_here(&self, name: &str) -> Result<Option<pb::Policy>, ApiError> {
        Ok(access_records::policy(&*self.raft.reader().view(), name)?)
    }

    /// Every token record (hashes, never token values), revoked and expired ones included.
    pub fn tokens_here(&self) -> Result<Vec<pb::TokenRecord>, ApiError> {
        Ok(access_records::tokens(&*self.raft.reader().view())?)
    }

    /// The root token may be revoked only once another live token could have revoked it: an
    /// administrator with `policy:admin` on `token/root` exists.
    pub fn require_another_admin(&self) -> Result<(), ApiError> {
        let now = crate::time::now_ms();
        let (policies, tokens) = {
            let view = self.raft.reader().view();
            (access_records::policies(&*view)?, access_records::tokens(&*view)?)
        };
        let admin = tokens
            .iter()
            .filter(|t| t.revoked_at_ms == 0 && t.expires_at_ms > now)
            .any(|t| {
                let held: Vec<pb::Policy> = policies
                    .iter()
                    .filter(|p| t.policies.contains(&p.name))
                    .cloned()
                    .collect();
                let caller = policy::Caller {
                    principal: &t.principal,
                    groups: &t.groups,
                    token_lifetime_ms: Some(t.expires_at_ms.saturating_sub(t.created_at_ms)),
                };
                let q = policy::Query {
                    action: Action::PolicyAdmin,
                    resource: "token/root",
                    region: self.seam.region(),
                    now_ms: now,
                };
                policy::decide(&held, &caller, &q).allowed
            });
        if admin {
            Ok(())
        } else {
            Err(ApiError::FailedPrecondition(
                "no other live token holds policy:admin on token/root; create an administrator's token first, \
                 then revoke the root token with it"
                    .into(),
            ))
        }
    }
}

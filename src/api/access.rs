//! The `coffer.v1.Access` service: tokens, policies and this node's audit log.
//!
//! Tokens are random (`cft_` + 256 bits), shown once, and stored as SHA-256 hashes through
//! Raft; policies are validated in full ([`crate::authz::policy`]) before they are proposed.
//! Every call passes the seam like any other: token and policy management need `policy:admin`
//! on `token/<principal>` or `policy/<name>`, the audit log `audit:read` on `audit`.

use std::sync::Arc;
use std::time::Duration;

use coffer_model::access_records;
use prost::Message;
use tonic::Request;
use tonic::Response;
use tonic::Status;

use crate::authz::policy;
use crate::authz::Action;
use crate::authz::Ask;
use crate::authz::Grant;
use crate::crypto::SecretValue;
use crate::error::ApiError;
use crate::pb;
use crate::pb::command::Op;
use crate::service::write::Committed;
use crate::service::Service;

const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
const MAX_TTL: Duration = Duration::from_secs(366 * 24 * 3600);
/// Most groups and policies one token may carry.
const MAX_TOKEN_LIST: usize = 64;
/// Name (plus the request id) under which a token reply is sealed: not a valid secret name.
const TOKEN_REPLY_NAME: &str = "_cluster/token-reply/";
/// Largest policy document accepted.
const MAX_POLICY_DOCUMENT: usize = 64 * 1024;

pub struct AccessApi {
    service: Arc<Service>,
}

/// `policy:admin` on every policy.
static EVERY_POLICY_ADMIN: std::sync::LazyLock<Vec<(Action, String)>> =
    std::sync::LazyLock::new(|| vec![(Action::PolicyAdmin, "policy/*".to_string())]);

/// Writing or deleting a policy: `policy:admin` on it, and on every policy (`policy/*`): a
/// document can grant anything, so only callers who administer every policy (platform
/// administrators) write them; delegated administrators (`policy/acme-*`) read them and mint
/// tokens that carry them.
fn writes_policies(resource: &str) -> Ask<'_> {
    let mut ask = Ask::new(&[Action::PolicyAdmin], resource);
    ask.also = EVERY_POLICY_ADMIN.as_slice();
    ask.also_why =
        "a policy document can grant anything, so writing or deleting one needs policy:admin on every policy";
    ask
}

impl AccessApi {
    pub fn new(service: Arc<Service>) -> Self {
        Self { service }
    }

    /// Proposes `op` and turns a model failure into an API error.
    async fn commit(&self, grant: &Grant, op: Op) -> Result<Committed, ApiError> {
        self.service.propose(grant, op).await?.map_err(ApiError::from)
    }

    async fn create_token(&self, req: Request<pb::CreateTokenRequest>) -> Result<pb::CreateTokenResponse, ApiError> {
        let resource = format!("token/{}", req.get_ref().principal);
        // A token may carry only policies its creator administers: attaching one is granting
        // what it says (an over-long list is refused below, after authorization).
        let attached: Vec<(Action, String)> = req
            .get_ref()
            .policies
            .iter()
            .take(MAX_TOKEN_LIST)
            .map(|p| (Action::PolicyAdmin, format!("policy/{p}")))
            .collect();
        let mut ask = Ask::new(&[Action::PolicyAdmin], &resource);
        ask.also = &attached;
        ask.also_why = "a token may carry only policies its creator administers";
        let grant = self.service.grant_ask(&req, ask).await?;
        let r = req.into_inner();
        let id =
            policy::parse_principal(&r.principal).map_err(|e| ApiError::invalid(format!("invalid principal: {e}")))?;
        let tenant = match (id.tenant.as_deref(), r.tenant.as_str()) {
            (Some(t), "") => t.to_string(),
            (Some(t), given) if t == given => t.to_string(),
            (Some(t), given) => {
                return Err(ApiError::invalid(format!(
                    "principal {} belongs to tenant {t}, not {given}",
                    r.principal
                )))
            }
            (None, "") => String::new(),
            (None, given) => {
                return Err(ApiError::invalid(format!(
                    "principal {} is a platform principal (kind:name) and has no tenant; for tenant {given} \
                     use kind:{given}:name",
                    r.principal
                )))
            }
        };
        if r.groups.len() > MAX_TOKEN_LIST || r.policies.len() > MAX_TOKEN_LIST {
            return Err(ApiError::invalid(format!(
                "a token carries at most {MAX_TOKEN_LIST} groups and {MAX_TOKEN_LIST} policies"
            )));
        }
        for g in &r.groups {
            let gid = policy::parse_principal(g).map_err(|e| ApiError::invalid(format!("invalid group {g:?}: {e}")))?;
            if gid.kind != "group" {
                return Err(ApiError::invalid(format!("group {g:?} must be a group:… id")));
            }
            if gid.tenant.as_deref().unwrap_or("") != tenant {
                return Err(ApiError::invalid(format!(
                    "group {g} is not of the token's tenant ({})",
                    if tenant.is_empty() { "none: platform" } else { &tenant }
                )));
            }
        }
        if r.policies.is_empty() {
            return Err(ApiError::invalid(
                "a token needs at least one --policy (with none it could do nothing)",
            ));
        }
        // Whether each policy exists is the state machine's check (access_records::create_token),
        // made after the request table: a retry is answered with its first outcome even when a
        // policy it names was deleted since.
        let ttl = match r.ttl_ms {
            0 => DEFAULT_TTL,
            ms => Duration::from_millis(ms),
        };
        if ttl < Duration::from_secs(1) || ttl > MAX_TTL {
            return Err(ApiError::invalid("--ttl must be between 1s and 366 days"));
        }
        let token = crate::authz::new_token().map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let accessor = crate::crypto::random_bytes::<16>()
            .map(hex::encode)
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let now = crate::time::now_ms();
        let expires_at_ms = now + ttl.as_millis() as u64;
        let record = pb::TokenRecord {
            accessor: accessor.clone(),
            token_sha256: crate::authz::token_hash(&token).to_vec(),
            principal: r.principal.clone(),
            tenant,
            groups: r.groups,
            policies: r.policies,
            created_at_ms: now,
            expires_at_ms,
            revoked_at_ms: 0,
            created_by: grant.principal().id.clone(),
        };
        let response = pb::CreateTokenResponse {
            token,
            accessor,
            expires_at_ms,
            principal: r.principal,
        };
        // Sealed into the command, so that a retry of this request is answered with this
        // token, not with one that was never stored. Like a secret write, this needs one
        // region's KMS: without it nothing is issued (UNAVAILABLE), never a token whose retry
        // could not be answered.
        let reply_name = format!("{TOKEN_REPLY_NAME}{}", grant.request_id());
        let sealed = self
            .service
            .vault
            .prepare(&reply_name)
            .await?
            .seal(&SecretValue::new(response.encode_to_vec()), 1)
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let c = self
            .commit(
                &grant,
                Op::CreateToken(pb::CreateToken {
                    token: Some(record),
                    reply: Some(sealed),
                }),
            )
            .await?;
        if !c.replayed {
            return Ok(response);
        }
        let first =
            c.ok.reply
                .ok_or_else(|| ApiError::internal("a replayed token request has no reply to repeat"))?;
        let opened = self.service.vault.open_envelope(&reply_name, 1, &first).await?;
        pb::CreateTokenResponse::decode(opened.expose())
            .map_err(|e| ApiError::internal(format!("the first reply to this token request does not decode: {e}")))
    }

    async fn revoke_token(&self, req: Request<pb::RevokeTokenRequest>) -> Result<pb::RevokeTokenResponse, ApiError> {
        let accessor = req.get_ref().accessor.trim().to_ascii_lowercase();
        let target = if accessor == access_records::ROOT_ACCESSOR {
            None
        } else {
            self.service
                .find_fresh(|view| Ok(access_records::token(view, &accessor)?))
                .await?
        };
        let resource = match &target {
            Some(t) => format!("token/{}", t.principal),
            None if accessor == access_records::ROOT_ACCESSOR => "token/root".to_string(),
            // Unknown accessor: decided like a listing, so the caller learns "not found" only
            // if it may see every token anyway.
            None => "token/*".to_string(),
        };
        let grant = self.service.grant(&req, Action::PolicyAdmin, &resource).await?;
        // A retry (a client request id) of a revoke whose first attempt applied may find the
        // record gone (collected after its retention): it is proposed anyway, so the request
        // table answers it with the first outcome, and a new request gets the model's NotFound.
        let retryable = matches!(crate::request_ids::from_metadata(req.metadata()), Ok(Some(_)));
        if accessor == access_records::ROOT_ACCESSOR {
            self.service.require_another_admin()?;
        } else if target.is_none() && !retryable {
            return Err(ApiError::NotFound(format!(
                "no token has accessor {accessor:?}; `coffer token list` shows them"
            )));
        }
        self.commit(
            &grant,
            Op::RevokeToken(pb::RevokeToken {
                accessor: accessor.clone(),
            }),
        )
        .await?;
        Ok(pb::RevokeTokenResponse {
            accessor,
            revoked_at_ms: crate::time::now_ms(),
        })
    }

    async fn list_tokens(&self, req: Request<pb::ListTokensRequest>) -> Result<pb::ListTokensResponse, ApiError> {
        self.service.grant(&req, Action::PolicyAdmin, "token/*").await?;
        let tokens = self
            .service
            .tokens_here()?
            .into_iter()
            .map(|t| pb::TokenInfo {
                accessor: t.accessor,
                principal: t.principal,
                tenant: t.tenant,
                groups: t.groups,
                policies: t.policies,
                created_at_ms: t.created_at_ms,
                expires_at_ms: t.expires_at_ms,
                revoked_at_ms: t.revoked_at_ms,
                created_by: t.created_by,
            })
            .collect();
        Ok(pb::ListTokensResponse { tokens })
    }

    async fn put_policy(&self, req: Request<pb::PutPolicyRequest>) -> Result<pb::PutPolicyResponse, ApiError> {
        // The name decides the resource; the full check comes after the caller is authorized,
        // so an anonymous caller learns nothing about the document.
        let name = serde_json::from_str::<serde_json::Value>(&req.get_ref().document)
            .ok()
            .and_then(|v| v.get("name").and_then(|n| n.as_str()).map(str::to_string))
            .unwrap_or_default();
        let resource = format!("policy/{name}");
        let grant = self.service.grant_ask(&req, writes_policies(&resource)).await?;
        let doc = req.into_inner().document;
        if doc.len() > MAX_POLICY_DOCUMENT {
            return Err(ApiError::invalid(format!(
                "the policy document is {} bytes; the limit is {MAX_POLICY_DOCUMENT}",
                doc.len()
            )));
        }
        let p = policy::parse_document(&doc).map_err(|e| ApiError::invalid(e.to_string()))?;
        let name = p.name.clone();
        let log_index = self
            .commit(&grant, Op::PutPolicy(pb::PutPolicy { policy: Some(p) }))
            .await?
            .index;
        Ok(pb::PutPolicyResponse { name, log_index })
    }

    async fn get_policy(&self, req: Request<pb::GetPolicyRequest>) -> Result<pb::GetPolicyResponse, ApiError> {
        let name = req.get_ref().name.clone();
        self.service
            .grant(&req, Action::PolicyAdmin, &format!("policy/{name}"))
            .await?;
        let p = self
            .service
            .policy_here(&name)?
            .ok_or_else(|| ApiError::NotFound(format!("policy {name} not found; `coffer policy list` shows them")))?;
        Ok(pb::GetPolicyResponse {
            document: policy::to_document(&p),
            updated_at_ms: p.updated_at_ms,
            updated_by: p.updated_by,
        })
    }

    async fn list_policies(&self, req: Request<pb::ListPoliciesRequest>) -> Result<pb::ListPoliciesResponse, ApiError> {
        self.service.grant(&req, Action::PolicyAdmin, "policy/*").await?;
        let names = self.service.policies_here()?.into_iter().map(|p| p.name).collect();
        Ok(pb::ListPoliciesResponse { names })
    }

    async fn delete_policy(&self, req: Request<pb::DeletePolicyRequest>) -> Result<pb::DeletePolicyResponse, ApiError> {
        let name = req.get_ref().name.clone();
        let resource = format!("policy/{name}");
        let grant = self.service.grant_ask(&req, writes_policies(&resource)).await?;
        access_records::validate_policy_name(&name).map_err(ApiError::invalid)?;
        self.commit(&grant, Op::DeletePolicy(pb::DeletePolicy { name: name.clone() }))
            .await?;
        Ok(pb::DeletePolicyResponse { name })
    }

    async fn check_policy(&self, req: Request<pb::CheckPolicyRequest>) -> Result<pb::CheckPolicyResponse, ApiError> {
        self.service.grant(&req, Action::PolicyAdmin, "policy/*").await?;
        let r = req.into_inner();
        policy::parse_principal(&r.principal).map_err(|e| ApiError::invalid(format!("invalid principal: {e}")))?;
        let action = policy::parse_action(&r.action).map_err(|e| ApiError::invalid(e.to_string()))?;
        let policies = self.service.policies_here()?;
        let region = if r.region.is_empty() {
            self.service.seam.region().to_string()
        } else {
            r.region
        };
        let caller = policy::Caller {
            principal: &r.principal,
            groups: &r.groups,
            token_lifetime_ms: None,
        };
        let d = policy::decide(
            &policies,
            &caller,
            &policy::Query {
                action,
                resource: &r.resource,
                region: &region,
                now_ms: crate::time::now_ms(),
            },
        );
        Ok(pb::CheckPolicyResponse {
            allowed: d.allowed,
            statement: d.statement.map(|s| s.to_string()).unwrap_or_default(),
            explanation: d.explanation,
        })
    }

    async fn audit_tail(&self, req: Request<pb::AuditTailRequest>) -> Result<pb::AuditTailResponse, ApiError> {
        self.service.grant(&req, Action::AuditRead, "audit").await?;
        let count = match req.get_ref().count {
            0 => 20,
            n => (n as usize).min(10_000),
        };
        // Reading the files blocks: off the runtime's workers.
        let audit = self.service.audit.clone();
        let entries = tokio::task::spawn_blocking(move || audit.tail(count))
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| ApiError::Unavailable(format!("reading the audit log: {e}")))?
            .into_iter()
            .map(|e| pb::AuditEntry {
                seq: e.seq,
                event: Some(e.event),
                hash: e.hash,
            })
            .collect();
        Ok(pb::AuditTailResponse {
            entries,
            served_by: Some(
                self.service
                    .served_by(self.service.raft.role_and_membership().0.as_str()),
            ),
        })
    }

    async fn audit_verify(&self, req: Request<pb::AuditVerifyRequest>) -> Result<pb::AuditVerifyResponse, ApiError> {
        self.service.grant(&req, Action::AuditRead, "audit").await?;
        let audit = self.service.audit.clone();
        // Anchors first: each was durable in the log when anchored.
        let anchors = self.service.audit_anchors_here()?;
        let report = tokio::task::spawn_blocking(move || audit.verify(&anchors))
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| ApiError::Unavailable(format!("reading the audit log: {e}")))?;
        let (first_broken, problem) = match report.broken {
            Some(b) => (b.position, b.problem),
            None => (0, String::new()),
        };
        Ok(pb::AuditVerifyResponse {
            ok: first_broken == 0,
            records: report.records,
            first_broken,
            problem,
            first_seq: report.first_seq,
            files: report.files as u32,
            anchors_checked: report.anchors_checked,
            anchored_through: report.anchored_through,
            served_by: Some(
                self.service
                    .served_by(self.service.raft.role_and_membership().0.as_str()),
            ),
        })
    }
}

#[tonic::async_trait]
impl pb::access_server::Access for AccessApi {
    async fn create_token(
        &self,
        req: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        Ok(Response::new(self.create_token(req).await?))
    }
    async fn revoke_token(
        &self,
        req: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        Ok(Response::new(self.revoke_token(req).await?))
    }
    async fn list_tokens(
        &self,
        req: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        Ok(Response::new(self.list_tokens(req).await?))
    }
    async fn put_policy(&self, req: Request<pb::PutPolicyRequest>) -> Result<Response<pb::PutPolicyResponse>, Status> {
        Ok(Response::new(self.put_policy(req).await?))
    }
    async fn get_policy(&self, req: Request<pb::GetPolicyRequest>) -> Result<Response<pb::GetPolicyResponse>, Status> {
        Ok(Response::new(self.get_policy(req).await?))
    }
    async fn list_policies(
        &self,
        req: Request<pb::ListPoliciesRequest>,
    ) -> Result<Response<pb::ListPoliciesResponse>, Status> {
        Ok(Response::new(self.list_policies(req).await?))
    }
    async fn delete_policy(
        &self,
        req: Request<pb::DeletePolicyRequest>,
    ) -> Result<Response<pb::DeletePolicyResponse>, Status> {
        Ok(Response::new(self.delete_policy(req).await?))
    }
    async fn check_policy(
        &self,
        req: Request<pb::CheckPolicyRequest>,
    ) -> Result<Response<pb::CheckPolicyResponse>, Status> {
        Ok(Response::new(self.check_policy(req).await?))
    }
    async fn audit_tail(&self, req: Request<pb::AuditTailRequest>) -> Result<Response<pb::AuditTailResponse>, Status> {
        Ok(Response::new(self.audit_tail(req).await?))
    }
    async fn audit_verify(
        &self,
        req: Request<pb::AuditVerifyRequest>,
    ) -> Result<Response<pb::AuditVerifyResponse>, Status> {
        Ok(Response::new(self.audit_verify(req).await?))
    }
}

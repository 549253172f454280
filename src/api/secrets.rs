//! The `coffer.v1.Secrets` service.

use std::sync::Arc;

use coffer_raft::names;
use coffer_raft::query;
use coffer_raft::query::aliases_of;
use coffer_raft::query::Selector;
use coffer_raft::secrets::MAX_VALUE_BYTES;
use tonic::Request;
use tonic::Response;
use tonic::Status;

use super::Core;
use crate::authz::Action;
use crate::crypto::SecretValue;
use crate::error::ApiError;
use crate::pb;
use crate::pb::command::Op;

/// How many times a put re-seals for a newer version number after losing a race.
const MAX_VERSION_RACES: usize = 8;

pub struct SecretsApi {
    core: Arc<Core>,
}

impl SecretsApi {
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }
}

fn valid_name(name: &str) -> Result<(), ApiError> {
    names::validate_name(name).map_err(|e| ApiError::invalid(format!("invalid secret name: {e}")))
}

fn write_response(name: &str, ok: pb::CommandOk) -> pb::WriteResponse {
    pb::WriteResponse {
        name: name.to_string(),
        version: ok.version,
        etag: ok.etag,
        aliases: ok.aliases,
        log_index: 0,
    }
}

impl SecretsApi {
    /// Proposes a write on `name` for an already granted request and shapes the reply.
    async fn submit(
        &self,
        grant: &crate::authz::Grant,
        name: &str,
        op: Op,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        valid_name(name)?;
        let ok = self.core.propose(grant, op).await?.map_err(ApiError::from)?;
        Ok(Response::new(write_response(name, ok)))
    }

    async fn put(&self, req: Request<pb::PutSecretValueRequest>) -> Result<pb::WriteResponse, ApiError> {
        let grant = self.core.grant(&req, Action::SecretsWrite, &req.get_ref().name)?;
        let r = req.into_inner();
        let name = r.name;
        let value = SecretValue::new(r.value);
        valid_name(&name)?;
        if value.is_empty() {
            return Err(ApiError::invalid("the value is empty; secrets need at least one byte"));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(ApiError::invalid(format!(
                "the value is {} bytes; the limit is {MAX_VALUE_BYTES} bytes (64 KiB)",
                value.len()
            )));
        }
        let alias = match r.alias.as_str() {
            "" => names::CURRENT.to_string(),
            "none" => String::new(),
            a => {
                let a = names::normalize_alias(a).map_err(|e| ApiError::invalid(e.to_string()))?;
                if a == names::PREVIOUS {
                    return Err(ApiError::invalid("PREVIOUS is maintained by moves of CURRENT"));
                }
                a
            }
        };
        let mut version = {
            let view = self.core.raft.reader().view();
            match query::secret(&*view, &name) {
                Ok(s) => s.next_version,
                Err(query::QueryError::Model(e)) if e.code == pb::ErrorCode::NotFound => 1,
                Err(e) => return Err(e.into()),
            }
        };
        let sealer = self.core.vault.prepare(&name).await?;
        let crc = crc32c::crc32c(value.expose());
        for _ in 0..MAX_VERSION_RACES {
            let envelope = sealer
                .seal(&value, version)
                .map_err(|e| ApiError::Unavailable(e.to_string()))?;
            let op = Op::AddVersion(pb::AddVersion {
                name: name.clone(),
                version,
                envelope: Some(envelope),
                crc32c: crc,
                size: value.len() as u32,
                alias: alias.clone(),
                create_if_missing: (!r.must_exist).then(pb::SecretSpec::default),
                expires_at_ms: 0,
            });
            match self.core.propose(&grant, op).await? {
                Ok(ok) => return Ok(write_response(&name, ok)),
                Err(e) if e.code == pb::ErrorCode::VersionConflict => version = e.next_version,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::Conflict(format!(
            "{name} is being written concurrently; gave up after {MAX_VERSION_RACES} version races, retry"
        )))
    }

    async fn get(&self, req: Request<pb::GetSecretValueRequest>) -> Result<pb::GetSecretValueResponse, ApiError> {
        self.core.grant(&req, Action::SecretsRead, &req.get_ref().name)?;
        let r = req.into_inner();
        self.core.check_consistency(&r.consistency)?;
        let selector = match r.selector {
            None => Selector::Current,
            Some(pb::get_secret_value_request::Selector::Version(0)) => {
                return Err(ApiError::invalid("versions start at 1"))
            }
            Some(pb::get_secret_value_request::Selector::Version(v)) => Selector::Version(v),
            Some(pb::get_secret_value_request::Selector::Alias(a)) => Selector::Alias(a),
        };
        let read = self.core.read_meta();
        let (secret, version) = {
            let view = self.core.raft.reader().view();
            query::resolve(&*view, &r.name, &selector)?
        };
        let value = self.core.vault.open(&version).await?;
        Ok(pb::GetSecretValueResponse {
            name: r.name,
            version: version.version,
            value: value.expose().to_vec(),
            aliases: aliases_of(&secret, version.version),
            read: Some(read),
            created_at_ms: version.created_at_ms,
        })
    }
}

#[tonic::async_trait]
impl pb::secrets_server::Secrets for SecretsApi {
    async fn create_secret(
        &self,
        req: Request<pb::CreateSecretRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let grant = self.core.grant(&req, Action::SecretsWrite, &req.get_ref().name)?;
        let r = req.into_inner();
        let op = Op::CreateSecret(pb::CreateSecret {
            name: r.name.clone(),
            spec: r.spec,
        });
        self.submit(&grant, &r.name, op).await
    }

    async fn put_secret_value(
        &self,
        req: Request<pb::PutSecretValueRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        Ok(Response::new(self.put(req).await?))
    }

    async fn get_secret_value(
        &self,
        req: Request<pb::GetSecretValueRequest>,
    ) -> Result<Response<pb::GetSecretValueResponse>, Status> {
        Ok(Response::new(self.get(req).await?))
    }

    async fn list_versions(
        &self,
        req: Request<pb::ListVersionsRequest>,
    ) -> Result<Response<pb::ListVersionsResponse>, Status> {
        self.core.grant(&req, Action::SecretsRead, &req.get_ref().name)?;
        let r = req.into_inner();
        self.core.check_consistency(&r.consistency)?;
        let read = self.core.read_meta();
        let view = self.core.raft.reader().view();
        let secret = query::secret(&*view, &r.name).map_err(ApiError::from)?;
        let versions = query::versions(&*view, &r.name).map_err(ApiError::from)?;
        let versions = versions
            .into_iter()
            .map(|v| pb::VersionInfo {
                version: v.version,
                state: v.state,
                aliases: aliases_of(&secret, v.version),
                created_at_ms: v.created_at_ms,
                created_by: v.created_by,
                size: v.size,
                disabled_at_ms: v.disabled_at_ms,
                destroyed_at_ms: v.destroyed_at_ms,
                wrapped_regions: v
                    .envelope
                    .map(|e| e.wrapped_keys.into_iter().map(|w| w.region).collect())
                    .unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(pb::ListVersionsResponse {
            name: r.name,
            versions,
            read: Some(read),
        }))
    }

    async fn describe_secret(
        &self,
        req: Request<pb::DescribeSecretRequest>,
    ) -> Result<Response<pb::DescribeSecretResponse>, Status> {
        self.core.grant(&req, Action::SecretsRead, &req.get_ref().name)?;
        let r = req.into_inner();
        self.core.check_consistency(&r.consistency)?;
        let read = self.core.read_meta();
        let s = {
            let view = self.core.raft.reader().view();
            query::secret(&*view, &r.name).map_err(ApiError::from)?
        };
        Ok(Response::new(pb::DescribeSecretResponse {
            secret: Some(pb::SecretInfo {
                name: s.name,
                owner_team: s.owner_team,
                description: s.description,
                labels: s.labels,
                created_at_ms: s.created_at_ms,
                updated_at_ms: s.updated_at_ms,
                next_version: s.next_version,
                aliases: s.aliases,
                max_versions: s.max_versions,
                etag: s.etag,
                created_by: s.created_by,
                rotation: s.rotation,
            }),
            read: Some(read),
        }))
    }

    async fn list_secrets(
        &self,
        req: Request<pb::ListSecretsRequest>,
    ) -> Result<Response<pb::ListSecretsResponse>, Status> {
        self.core.grant(&req, Action::SecretsRead, &req.get_ref().prefix)?;
        let r = req.into_inner();
        self.core.check_consistency(&r.consistency)?;
        let limit = match r.limit {
            0 => 100,
            n if n > 1000 => return Err(ApiError::invalid("limit must be at most 1000").into()),
            n => n as usize,
        };
        if !r.page_token.is_empty() && !r.page_token.starts_with(&r.prefix) {
            return Err(ApiError::invalid("page_token does not belong to this prefix").into());
        }
        let read = self.core.read_meta();
        let (names, next) = {
            let view = self.core.raft.reader().view();
            query::list(&*view, &r.prefix, &r.page_token, limit).map_err(ApiError::from)?
        };
        Ok(Response::new(pb::ListSecretsResponse {
            names,
            next_page_token: next,
            read: Some(read),
        }))
    }

    async fn move_alias(&self, req: Request<pb::MoveAliasRequest>) -> Result<Response<pb::WriteResponse>, Status> {
        let grant = self.core.grant(&req, Action::SecretsRotate, &req.get_ref().name)?;
        let r = req.into_inner();
        valid_name(&r.name)?;
        let alias = names::normalize_alias(&r.alias).map_err(|e| ApiError::invalid(e.to_string()))?;
        if r.version == 0 {
            return Err(ApiError::invalid("versions start at 1").into());
        }
        let expected = match r.expected_version {
            Some(e) => e,
            // The serving replica's view; the move still fails if another one commits first.
            None => {
                let view = self.core.raft.reader().view();
                let s = query::secret(&*view, &r.name).map_err(ApiError::from)?;
                s.aliases.get(&alias).copied().unwrap_or(0)
            }
        };
        let op = Op::MoveAlias(pb::MoveAlias {
            name: r.name.clone(),
            alias,
            version: r.version,
            expected_version: expected,
        });
        self.submit(&grant, &r.name, op).await
    }

    async fn set_version_state(
        &self,
        req: Request<pb::SetVersionStateRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let grant = self.core.grant(&req, Action::SecretsRotate, &req.get_ref().name)?;
        let r = req.into_inner();
        valid_name(&r.name)?;
        let state = if r.enabled {
            pb::VersionState::Enabled
        } else {
            pb::VersionState::Disabled
        };
        let op = Op::SetVersionState(pb::SetVersionState {
            name: r.name.clone(),
            version: r.version,
            state: state as i32,
        });
        self.submit(&grant, &r.name, op).await
    }

    async fn destroy_version(
        &self,
        req: Request<pb::DestroyVersionRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let grant = self.core.grant(&req, Action::SecretsAdmin, &req.get_ref().name)?;
        let r = req.into_inner();
        valid_name(&r.name)?;
        let op = Op::DestroyVersion(pb::DestroyVersion {
            name: r.name.clone(),
            version: r.version,
        });
        let reply = self.submit(&grant, &r.name, op).await?;
        self.core.vault.forget(&r.name, r.version);
        Ok(reply)
    }
}

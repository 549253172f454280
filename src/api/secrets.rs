//! The `coffer.v1.Secrets` service.

use std::sync::Arc;

use coffer_model::names;
use coffer_model::query::aliases_of;
use coffer_model::secrets::MAX_VALUE_BYTES;
use tokio_stream::StreamExt;
use tonic::Request;
use tonic::Response;
use tonic::Status;

use crate::authz::Action;
use crate::authz::Ask;
use crate::authz::BreakGlass;
use crate::authz::Grant;
use crate::crypto::SecretValue;
use crate::error::ApiError;
use crate::pb;
use crate::pb::command::Op;
use crate::service::put::PutValue;
use crate::service::read::consistency_label;
use crate::service::read::VersionRead;
use crate::service::watch::Scope;
use crate::service::watch::Watch;
use crate::service::Service;

pub struct SecretsApi {
    service: Arc<Service>,
}

impl SecretsApi {
    pub fn new(service: Arc<Service>) -> Self {
        Self { service }
    }
}

/// Metadata (names, versions, aliases; never values) is readable by anyone who may read,
/// write, rotate or administer the secret: a rotator must see versions to promote one.
const METADATA_READERS: &[Action] = &[
    Action::SecretsRead,
    Action::SecretsRotate,
    Action::SecretsWrite,
    Action::SecretsAdmin,
];

fn valid_name(name: &str) -> Result<(), ApiError> {
    names::validate_name(name).map_err(|e| ApiError::invalid(format!("invalid secret name: {e}")))
}

impl SecretsApi {
    /// The seam for a request on one version (recorded in the audit event).
    async fn grant_on_version<T>(
        &self,
        req: &Request<T>,
        action: Action,
        name: &str,
        version: u64,
    ) -> Result<Grant, ApiError> {
        let mut ask = Ask::new(std::slice::from_ref(&action), name);
        ask.version = version;
        self.service.grant_ask(req, ask).await
    }

    /// Proposes a write on `name` for an already granted request and shapes the reply.
    async fn submit(&self, grant: &Grant, name: &str, op: Op) -> Result<pb::WriteResponse, ApiError> {
        valid_name(name)?;
        let c = self.service.propose(grant, op).await?.map_err(ApiError::from)?;
        self.reply(name, c.ok, c.index).await
    }

    async fn reply(&self, name: &str, ok: pb::CommandOk, index: u64) -> Result<pb::WriteResponse, ApiError> {
        Ok(pb::WriteResponse {
            name: name.to_string(),
            version: ok.version,
            etag: ok.etag,
            aliases: ok.aliases,
            log_index: index,
            token: self.service.mint(index).await?,
        })
    }

    async fn put(&self, req: Request<pb::PutSecretValueRequest>) -> Result<pb::WriteResponse, ApiError> {
        let (grant, outcome) = self
            .service
            .grant_with_outcome(&req, Ask::new(&[Action::SecretsWrite], &req.get_ref().name))
            .await?;
        let result = self.put_granted(&grant, req.into_inner()).await;
        let version = result.as_ref().map(|w| w.version);
        self.service.seam.record_outcome(outcome, version).await;
        result
    }

    async fn put_granted(&self, grant: &Grant, r: pb::PutSecretValueRequest) -> Result<pb::WriteResponse, ApiError> {
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
        // A rotator's answer to a hook call: its value is that run's PENDING version.
        let rotation_run =
            match (r.rotation_run, r.rotation_token.is_empty()) {
                (0, true) => 0,
                (0, false) | (_, true) => return Err(ApiError::invalid(
                    "rotation_run and rotation_token go together: a rotator passes both, as its hook call gave them",
                )),
                (run, false) => {
                    self.service.check_rotation_token(&name, run, &r.rotation_token).await?;
                    run
                }
            };
        let alias = match r.alias.as_str() {
            "" if rotation_run != 0 => names::PENDING.to_string(),
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
        let c = self
            .service
            .put_value(
                &grant.principal().id,
                grant.request_id(),
                PutValue {
                    name: name.clone(),
                    value,
                    alias,
                    must_exist: r.must_exist || rotation_run != 0,
                    rotation_run,
                },
            )
            .await?;
        self.reply(&name, c.ok, c.index).await
    }

    async fn get(&self, req: Request<pb::GetSecretValueRequest>) -> Result<pb::GetSecretValueResponse, ApiError> {
        let (version, breaking) = {
            let r = req.get_ref();
            let v = match r.selector {
                Some(pb::get_secret_value_request::Selector::Version(v)) => v,
                _ => 0,
            };
            (v, r.break_glass.clone())
        };
        let mut ask = Ask::new(
            if breaking.is_some() {
                &[Action::SecretsReadBreakGlass]
            } else {
                &[Action::SecretsRead]
            },
            &req.get_ref().name,
        );
        ask.version = version;
        ask.consistency = consistency_label(&req.get_ref().consistency);
        ask.break_glass = breaking.as_ref().map(|b| BreakGlass {
            reason: &b.reason,
            ticket: &b.ticket,
        });
        let pending = self.service.grant_deferred(&req, ask).await?;
        let result = self.get_granted(req.into_inner()).await;
        if let Ok((answer, version)) = &result {
            // Counted before the audit record settles: a read whose record fails still counts
            // as use (the safe side for retirement).
            self.service
                .usage
                .record(&answer.name, *version, pending.principal(), crate::time::now_ms());
        }
        self.service.seam.settle(pending, result).await
    }

    /// Reads a value for a granted request; with the version read, for its audit record.
    async fn get_granted(&self, r: pb::GetSecretValueRequest) -> Result<(pb::GetSecretValueResponse, u64), ApiError> {
        let selector = match r.selector {
            Some(pb::get_secret_value_request::Selector::Version(0)) => {
                return Err(ApiError::invalid("versions start at 1"))
            }
            Some(pb::get_secret_value_request::Selector::Version(v)) => Some(pb::get_query::Selector::Version(v)),
            Some(pb::get_secret_value_request::Selector::Alias(a)) => Some(pb::get_query::Selector::Alias(a)),
            None => None,
        };
        let read = self.service.get_version(&r.consistency, &r.name, selector).await?;
        let VersionRead { secret, version } = read.value;
        let value = self.service.vault.open(&r.name, version.version, &version).await?;
        let answer = pb::GetSecretValueResponse {
            name: r.name,
            version: version.version,
            value: value.expose().to_vec(),
            aliases: aliases_of(&secret, version.version),
            read: Some(read.meta),
            created_at_ms: version.created_at_ms,
        };
        Ok((answer, version.version))
    }

    async fn versions(&self, req: Request<pb::ListVersionsRequest>) -> Result<pb::ListVersionsResponse, ApiError> {
        let mut ask = Ask::new(METADATA_READERS, &req.get_ref().name);
        ask.consistency = consistency_label(&req.get_ref().consistency);
        self.service.grant_ask(&req, ask).await?;
        let r = req.into_inner();
        let limit = match r.limit {
            0 => 100,
            n if n > 1000 => return Err(ApiError::invalid("limit must be at most 1000")),
            n => n,
        };
        let after = match r.page_token.as_str() {
            "" => 0,
            t => t.parse::<u64>().map_err(|_| {
                ApiError::invalid("page_token must be a next_page_token from an earlier page of this listing")
            })?,
        };
        let read = self.service.versions(&r.consistency, &r.name, after, limit).await?;
        let (secret, versions, next_page_token) = read.value;
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
        Ok(pb::ListVersionsResponse {
            name: r.name,
            versions,
            read: Some(read.meta),
            next_page_token,
        })
    }

    async fn describe(&self, req: Request<pb::DescribeSecretRequest>) -> Result<pb::DescribeSecretResponse, ApiError> {
        let mut ask = Ask::new(METADATA_READERS, &req.get_ref().name);
        ask.consistency = consistency_label(&req.get_ref().consistency);
        self.service.grant_ask(&req, ask).await?;
        let r = req.into_inner();
        let read = self.service.describe(&r.consistency, &r.name).await?;
        let s = read.value;
        let max_versions = coffer_model::version_cap::max_versions(&s) as u32;
        let rotation_due_at_ms = coffer_model::rotation::due_at(&s).unwrap_or(0);
        Ok(pb::DescribeSecretResponse {
            secret: Some(pb::SecretInfo {
                name: s.name,
                owner_team: s.owner_team,
                description: s.description,
                labels: s.labels,
                created_at_ms: s.created_at_ms,
                updated_at_ms: s.updated_at_ms,
                next_version: s.next_version,
                aliases: s.aliases,
                max_versions,
                etag: s.etag,
                created_by: s.created_by,
                rotation: s.rotation,
                rotation_run: s.rotation_run,
                rotation_due_at_ms,
            }),
            read: Some(read.meta),
        })
    }

    async fn list(&self, req: Request<pb::ListSecretsRequest>) -> Result<pb::ListSecretsResponse, ApiError> {
        // Decide on the listing `acme/app/` (a trailing `/` marks a listing): a bare tenant lists
        // that tenant (`acme/`), never `acme` (which a glob such as `acme*` could stretch).
        let resource = format!("{}/", req.get_ref().prefix.trim_end_matches('/'));
        let mut ask = Ask::new(METADATA_READERS, &resource);
        ask.consistency = consistency_label(&req.get_ref().consistency);
        self.service.grant_ask(&req, ask).await?;
        let r = req.get_ref().clone();
        let limit = match r.limit {
            0 => 100,
            n if n > 1000 => return Err(ApiError::invalid("limit must be at most 1000")),
            n => n,
        };
        if !r.page_token.is_empty() && !r.page_token.starts_with(&resource) {
            return Err(ApiError::invalid("page_token does not belong to this prefix"));
        }
        let page = pb::ListQuery {
            // Whole folders only: exactly what was authorized (`acme/ap` lists `acme/ap/…`,
            // never `acme/app/…`).
            prefix: resource,
            after: r.page_token,
            limit,
        };
        let read = self.service.list(&r.consistency, page).await?;
        // Only names the caller may see one by one (a denied sub-folder stays hidden); a page
        // may hold fewer than `limit` names, and the page token still moves on.
        let names = self.service.visible(&req, METADATA_READERS, read.value.names);
        Ok(pb::ListSecretsResponse {
            names,
            next_page_token: read.value.next_page_token,
            read: Some(read.meta),
        })
    }
}

impl SecretsApi {
    /// Admits a watch (one audited `secrets:read` decision on the name or folder) and starts
    /// its stream ([`crate::service::watch`]).
    async fn watch(&self, req: Request<pb::WatchRequest>) -> Result<WatchStream, ApiError> {
        let scope = Scope::of(req.get_ref())?;
        let mut ask = Ask::new(&[Action::SecretsRead], scope.resource());
        ask.consistency = "watch";
        self.service.grant_ask(&req, ask).await?;
        let slot = self.service.watch_slot()?;
        let (meta, info) = self.service.caller(&req);
        let w = Watch {
            meta,
            info,
            scope,
            after_index: req.get_ref().after_index,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(self.service.clone().stream_changes(w, tx, slot));
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(|r| r.map_err(Status::from));
        Ok(Box::pin(stream))
    }
}

/// The response stream of `Secrets.Watch`.
pub type WatchStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::secrets_server::Secrets for SecretsApi {
    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<pb::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        Ok(Response::new(SecretsApi::watch(self, req).await?))
    }

    async fn create_secret(
        &self,
        req: Request<pb::CreateSecretRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let grant = self
            .service
            .grant(&req, Action::SecretsWrite, &req.get_ref().name)
            .await?;
        let r = req.into_inner();
        let op = Op::CreateSecret(pb::CreateSecret {
            name: r.name.clone(),
            spec: r.spec,
        });
        Ok(Response::new(self.submit(&grant, &r.name, op).await?))
    }

    /// Metadata changes (owner, labels, rotation policy) are `secrets:admin`: a rotation
    /// policy decides which rotator is called and when versions are retired.
    async fn update_secret(
        &self,
        req: Request<pb::UpdateSecretRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let grant = self
            .service
            .grant(&req, Action::SecretsAdmin, &req.get_ref().name)
            .await?;
        let r = req.into_inner();
        let op = Op::UpdateSecret(pb::UpdateSecret {
            name: r.name.clone(),
            expected_etag: r.expected_etag,
            spec: r.spec,
        });
        Ok(Response::new(self.submit(&grant, &r.name, op).await?))
    }

    /// Starts a rotation now, or rolls CURRENT back to PREVIOUS (`secrets:rotate`).
    async fn rotate_secret(
        &self,
        req: Request<pb::RotateSecretRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let grant = self
            .service
            .grant(&req, Action::SecretsRotate, &req.get_ref().name)
            .await?;
        let r = req.into_inner();
        let op = if r.rollback {
            let Some(expected_current) = r.expected_current else {
                return Err(
                    ApiError::invalid("a rollback needs expected_current: the version CURRENT points at now").into(),
                );
            };
            Op::RollbackRotation(pb::RollbackRotation {
                name: r.name.clone(),
                expected_current,
            })
        } else {
            if r.expected_current.is_some() {
                return Err(ApiError::invalid("expected_current is only for a rollback").into());
            }
            Op::StartRotation(pb::StartRotation {
                name: r.name.clone(),
                run: 0,
            })
        };
        Ok(Response::new(self.submit(&grant, &r.name, op).await?))
    }

    /// Every secret with a rotation policy under a prefix, and where its rotation stands.
    async fn rotation_status(
        &self,
        req: Request<pb::RotationStatusRequest>,
    ) -> Result<Response<pb::RotationStatusResponse>, Status> {
        // Decide on the listing (`acme/` or deeper); every tenant at once is the platform's view
        // (`cluster:admin` on `cluster`). Either way only names the caller may see are listed.
        match req.get_ref().prefix.trim_end_matches('/') {
            "" => {
                self.service.grant(&req, Action::ClusterAdmin, "cluster").await?;
            }
            p => {
                let listing = format!("{p}/");
                self.service
                    .grant_ask(&req, Ask::new(METADATA_READERS, &listing))
                    .await?;
            }
        }
        let r = req.get_ref().clone();
        let report = self
            .service
            .rotation_status(&r.prefix, &r.owner_team, r.due, r.failed)?;
        let visible = self.service.visible(
            &req,
            METADATA_READERS,
            report.entries.iter().map(|e| e.name.clone()).collect(),
        );
        let secrets = report
            .entries
            .into_iter()
            .filter(|e| visible.binary_search(&e.name).is_ok())
            .collect();
        Ok(Response::new(pb::RotationStatusResponse {
            secrets,
            served_by: Some(self.service.served_by("")),
            truncated: report.truncated,
        }))
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

    async fn secret_usage(
        &self,
        req: Request<pb::SecretUsageRequest>,
    ) -> Result<Response<pb::SecretUsageResponse>, Status> {
        self.service
            .grant_ask(&req, Ask::new(METADATA_READERS, &req.get_ref().name))
            .await?;
        let r = req.into_inner();
        valid_name(&r.name)?;
        Ok(Response::new(self.service.secret_usage(&r.name).await?))
    }

    async fn list_versions(
        &self,
        req: Request<pb::ListVersionsRequest>,
    ) -> Result<Response<pb::ListVersionsResponse>, Status> {
        Ok(Response::new(self.versions(req).await?))
    }

    async fn describe_secret(
        &self,
        req: Request<pb::DescribeSecretRequest>,
    ) -> Result<Response<pb::DescribeSecretResponse>, Status> {
        Ok(Response::new(self.describe(req).await?))
    }

    async fn list_secrets(
        &self,
        req: Request<pb::ListSecretsRequest>,
    ) -> Result<Response<pb::ListSecretsResponse>, Status> {
        Ok(Response::new(self.list(req).await?))
    }

    async fn move_alias(&self, req: Request<pb::MoveAliasRequest>) -> Result<Response<pb::WriteResponse>, Status> {
        let grant = self
            .grant_on_version(&req, Action::SecretsRotate, &req.get_ref().name, req.get_ref().version)
            .await?;
        let r = req.into_inner();
        valid_name(&r.name)?;
        let alias = names::normalize_alias(&r.alias).map_err(|e| ApiError::invalid(e.to_string()))?;
        if r.version == 0 {
            return Err(ApiError::invalid("versions start at 1").into());
        }
        let expected = match r.expected_version {
            Some(e) => e,
            // The serving replica's view; the move still fails if another one commits first. A
            // secret missing here is looked for again once this replica caught up (a retry may
            // come through a node that lags behind the secret's creation: never answer it
            // NotFound from there); missing after that, the model answers NotFound.
            None => self
                .service
                .find_fresh(
                    |view| match coffer_model::query::secret(view, &r.name).map_err(ApiError::from) {
                        Ok(s) => Ok(Some(s)),
                        Err(ApiError::NotFound(_)) => Ok(None),
                        Err(e) => Err(e),
                    },
                )
                .await?
                .and_then(|s| s.aliases.get(&alias).copied())
                .unwrap_or(0),
        };
        let op = Op::MoveAlias(pb::MoveAlias {
            name: r.name.clone(),
            alias,
            version: r.version,
            expected_version: expected,
        });
        Ok(Response::new(self.submit(&grant, &r.name, op).await?))
    }

    async fn set_version_state(
        &self,
        req: Request<pb::SetVersionStateRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let grant = self
            .grant_on_version(&req, Action::SecretsRotate, &req.get_ref().name, req.get_ref().version)
            .await?;
        let r = req.into_inner();
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
        Ok(Response::new(self.submit(&grant, &r.name, op).await?))
    }

    async fn destroy_version(
        &self,
        req: Request<pb::DestroyVersionRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let grant = self
            .grant_on_version(&req, Action::SecretsAdmin, &req.get_ref().name, req.get_ref().version)
            .await?;
        let r = req.into_inner();
        let op = Op::DestroyVersion(pb::DestroyVersion {
            name: r.name.clone(),
            version: r.version,
        });
        let reply = self.submit(&grant, &r.name, op).await?;
        self.service.vault.forget(&r.name, r.version);
        Ok(Response::new(reply))
    }
}

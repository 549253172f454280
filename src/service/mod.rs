//! The service layer's domain operations (docs/architecture.md: Layers). The gRPC handlers in
//! `crate::api` decode a request, call one operation here, and encode its result; retries,
//! races, consistency modes and the authorization seam live here, not in the handlers.
//!
//! - [`Service`]: what every handler holds, with the seam ([`Service::grant`]);
//! - [`read`]: the one read path: a query answered with a consistency mode, typed per query;
//! - [`write`]: the one write path: a command proposed to the leader, applied once;
//! - [`put`]: a new secret version, re-sealed for the next number when writers race;
//! - [`access`]: policies and tokens as this replica holds them, and the root-revocation check;
//! - [`backup`]: a backup of the state streamed from this replica;
//! - [`destroyed`]: every node drops the data keys of destroyed versions;
//! - [`health`]: whether this node serves (ready), for every health probe;
//! - [`rotation_status`]: where every secret's rotation stands, from this replica;
//! - [`watch`]: the changes to a secret or a folder, streamed as this replica applies them.

pub mod access;
pub mod backup;
pub mod destroyed;
pub mod health;
pub mod put;
pub mod read;
pub mod rotation_status;
pub mod watch;
pub mod write;

use std::sync::Arc;
use std::time::Duration;

use coffer_raft::node::MemberState;
use coffer_raft::node::RaftNode;
use tokio::sync::OnceCell;

use crate::audit::AuditSink;
use crate::authz::outcome::Deferred;
use crate::authz::outcome::Outcome;
use crate::authz::Action;
use crate::authz::Ask;
use crate::authz::Grant;
use crate::authz::RequestInfo;
use crate::authz::Seam;
use crate::crypto::vault::Vault;
use crate::error::ApiError;
use crate::pb;
use crate::tokens::TokenKey;
use crate::usage::book::UsageBook;

/// The node's secrets service as every handler sees it: the authorization seam, the Raft node
/// with its one read path ([`read`]) and one write path ([`write`]), and the vault.
pub struct Service {
    pub raft: RaftNode,
    pub seam: Seam,
    /// This node's audit sink (the same one `access` records to), for tail and verify.
    pub audit: Arc<dyn AuditSink>,
    pub vault: Vault,
    pub me: pb::NodeInfo,
    pub write_timeout: Duration,
    /// The cluster's token key, unwrapped once it exists.
    pub token_key: OnceCell<TokenKey>,
    /// This node's read telemetry (`crate::usage`).
    pub usage: Arc<UsageBook>,
    /// Slots for watch streams ([`watch::MAX_WATCHES`]).
    pub watches: Arc<tokio::sync::Semaphore>,
    /// Turns true when the node stops: long-lived streams end.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// `[health] ready_max_staleness_ms`.
    pub ready_max_staleness_ms: u64,
    /// Faults a failover drill raised on this node (`crate::drill`).
    pub faults: Arc<crate::drill::faults::NodeFaults>,
}

/// Where a request came from, for the seam.
fn request_info<T>(req: &tonic::Request<T>) -> RequestInfo {
    RequestInfo {
        source: req.remote_addr().map(|a| a.to_string()).unwrap_or_default(),
        client_cert: req
            .peer_certs()
            .and_then(|certs| certs.first().map(|c| c.as_ref().to_vec())),
    }
}

impl Service {
    /// Passes the request through the authorization seam for one action on `resource`.
    pub async fn grant<T>(&self, req: &tonic::Request<T>, action: Action, resource: &str) -> Result<Grant, ApiError> {
        self.grant_ask(req, Ask::new(&[action], resource)).await
    }

    /// Passes the request through the authorization seam (see [`Ask`]).
    pub async fn grant_ask<T>(&self, req: &tonic::Request<T>, ask: Ask<'_>) -> Result<Grant, ApiError> {
        self.refuse_if_fenced(&ask)?;
        self.seam.check(req.metadata(), &request_info(req), ask).await
    }

    /// The seam for a read whose one audit record waits for its outcome ([`Seam::settle`]).
    pub async fn grant_deferred<T>(&self, req: &tonic::Request<T>, ask: Ask<'_>) -> Result<Deferred, ApiError> {
        self.refuse_if_fenced(&ask)?;
        self.seam.check_deferred(req.metadata(), &request_info(req), ask).await
    }

    /// The seam for a write whose outcome is recorded too ([`Seam::record_outcome`]).
    pub async fn grant_with_outcome<T>(
        &self,
        req: &tonic::Request<T>,
        ask: Ask<'_>,
    ) -> Result<(Grant, Outcome), ApiError> {
        self.refuse_if_fenced(&ask)?;
        self.seam
            .check_with_outcome(req.metadata(), &request_info(req), ask)
            .await
    }

    /// A fenced node (`crate::drill`) refuses every client request but health and the drill's
    /// own calls, gRPC and HTTP alike: they all pass through here first.
    fn refuse_if_fenced(&self, ask: &Ask<'_>) -> Result<(), ApiError> {
        let open = ask
            .actions
            .iter()
            .any(|a| matches!(a, Action::Health | Action::DrillRun))
            || coffer_kv::bugs::active(coffer_kv::bugs::Bug::FenceLetsClientsIn);
        match self.faults.fenced() {
            Some(why) if !open => {
                metrics::counter!("coffer_drill_refused_total", "port" => "api").increment(1);
                Err(ApiError::DrillInProgress(why))
            }
            _ => Ok(()),
        }
    }

    /// The names of `names` the request's caller may see under one of `actions`.
    pub fn visible<T>(&self, req: &tonic::Request<T>, actions: &[Action], names: Vec<String>) -> Vec<String> {
        self.seam.visible(req.metadata(), &request_info(req), actions, names)
    }

    /// Who sent `req`, kept by a stream that decides again as it goes (a watch).
    pub fn caller<T>(&self, req: &tonic::Request<T>) -> (tonic::metadata::MetadataMap, RequestInfo) {
        (req.metadata().clone(), request_info(req))
    }

    pub fn served_by(&self, role: &str) -> pb::ServedBy {
        pb::ServedBy {
            node_id: self.me.id,
            node: self.me.name.clone(),
            region: self.me.region.clone(),
            role: role.to_string(),
        }
    }

    /// The cluster's token key, unwrapped with the local KMS on first use. `None` until the
    /// leader has created it (right after bootstrap).
    pub async fn token_key(&self) -> Result<Option<&TokenKey>, ApiError> {
        if let Some(k) = self.token_key.get() {
            return Ok(Some(k));
        }
        let info = self.cluster_here()?;
        let Some((cluster_id, env)) = info.and_then(|i| i.token_key.map(|k| (i.cluster_id, k))) else {
            return Ok(None);
        };
        let key = self
            .vault
            .open_envelope(crate::tokens::TOKEN_KEY_NAME, 1, &env)
            .await
            .map_err(ApiError::from)?;
        Ok(Some(
            self.token_key
                .get_or_init(|| async { TokenKey::new(&cluster_id, key) })
                .await,
        ))
    }

    /// A token for `index`, or empty while the cluster has no token key yet.
    pub async fn mint(&self, index: u64) -> Result<String, ApiError> {
        Ok(self.token_key().await?.map(|k| k.mint(index)).unwrap_or_default())
    }

    /// The token of a hook call for run `run` of `name` ([`TokenKey::rotation_token`]).
    pub async fn rotation_token(&self, name: &str, run: u64) -> Result<crate::tokens::RotationToken, ApiError> {
        match self.token_key().await? {
            Some(k) => Ok(k.rotation_token(name, run)),
            None => Err(ApiError::Unavailable(
                "the cluster has no token key yet; rotation hooks wait for it".into(),
            )),
        }
    }

    /// Refuses a rotator's put whose token is not the cluster's for run `run` of `name`.
    pub async fn check_rotation_token(&self, name: &str, run: u64, token: &str) -> Result<(), ApiError> {
        let key = self.token_key().await?;
        if key.is_some_and(|k| k.verify_rotation_token(name, run, token)) {
            return Ok(());
        }
        Err(ApiError::PermissionDenied(format!(
            "the rotation token is not the one Coffer sent for run {run} of {name}; pass the run and token of the hook call as they came"
        )))
    }

    /// Refuses reads on a node that is not (or no longer) a member.
    pub(crate) fn check_member(&self) -> Result<(), ApiError> {
        match self.raft.role_and_membership().1 {
            MemberState::Member => Ok(()),
            MemberState::NotJoined => Err(ApiError::NotAMember(
                "this node has not joined a cluster yet; read from a member node".into(),
            )),
            MemberState::Removed => Err(ApiError::NodeRemoved(
                "this node was removed from the cluster and its data is no longer current; read from a member node"
                    .into(),
            )),
        }
    }
}

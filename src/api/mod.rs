//! Public gRPC services: [`secrets::SecretsApi`] and [`cluster::ClusterApi`], over a shared
//! [`Core`]. Each handler passes the authorization seam first ([`Core::grant`]), then reads
//! (with the requested consistency, [`Core::read`]) or proposes a command to the leader.

pub mod access;
pub mod cluster;
pub mod kms;
pub mod secrets;

use std::sync::Arc;
use std::time::Duration;

use coffer_kv::KvView;
use coffer_model::error::ModelError;
use coffer_model::query;
use coffer_raft::error::ProposeError;
use coffer_raft::node::Membership;
use coffer_raft::node::RaftNode;
use tokio::sync::OnceCell;

use crate::audit::AuditSink;
use crate::authz::Access;
use crate::authz::Action;
use crate::authz::Ask;
use crate::authz::Grant;
use crate::authz::RequestInfo;
use crate::crypto::vault::Vault;
use crate::error::ApiError;
use crate::pb;
use crate::tokens::TokenKey;

/// How long a write waits for the receiving node's replica to apply it before replying.
const LOCAL_APPLY_WAIT: Duration = Duration::from_secs(1);
/// Default waits of the consistency modes.
const BOUNDED_WAIT: Duration = Duration::from_millis(1000);
const AT_LEAST_WAIT: Duration = Duration::from_millis(5000);
const LINEARIZABLE_WAIT: Duration = Duration::from_millis(5000);

/// The consistency mode's name, as read replies and audit records report it.
pub fn consistency_label(c: &Option<pb::ReadConsistency>) -> &'static str {
    use pb::read_consistency::Mode;
    match c.as_ref().and_then(|c| c.mode.as_ref()) {
        None | Some(Mode::Local(_)) => "local",
        Some(Mode::Linearizable(_)) => "linearizable",
        Some(Mode::Bounded(_)) => "bounded",
        Some(Mode::AtLeast(_)) => "at_least",
    }
}

/// Everything a request handler needs, shared by the services of one node.
pub struct Core {
    pub raft: RaftNode,
    pub access: Access,
    /// This node's audit sink (the same one `access` records to), for tail and verify.
    pub audit: Arc<dyn AuditSink>,
    pub vault: Vault,
    pub me: pb::NodeInfo,
    pub write_timeout: Duration,
    /// The cluster's token key, unwrapped once it exists.
    pub token_key: OnceCell<TokenKey>,
}

/// A command the cluster applied (or, for a retried request id, had applied before).
pub struct Committed {
    pub ok: pb::CommandOk,
    /// The log index where it took effect.
    pub index: u64,
    /// The request id was applied before: `ok` is that first outcome and nothing changed now.
    pub replayed: bool,
}

/// Why [`Core::catch_up`] failed.
enum CatchUp {
    /// No leader gave a read index.
    NoLeader(ProposeError),
    /// This replica did not apply the read index in time.
    Behind { index: u64, applied: u64 },
}

/// What a read with a consistency mode resolved to.
pub struct ReadOutcome {
    pub answer: pb::ReadAnswer,
    pub meta: pb::ReadMeta,
}

impl Core {
    /// Passes the request through the authorization seam for one action on `resource`.
    pub async fn grant<T>(&self, req: &tonic::Request<T>, action: Action, resource: &str) -> Result<Grant, ApiError> {
        self.grant_ask(req, Ask::new(&[action], resource)).await
    }

    /// Passes the request through the authorization seam (see [`Ask`]).
    pub async fn grant_ask<T>(&self, req: &tonic::Request<T>, ask: Ask<'_>) -> Result<Grant, ApiError> {
        let info = RequestInfo {
            source: req.remote_addr().map(|a| a.to_string()).unwrap_or_default(),
            client_cert: req
                .peer_certs()
                .and_then(|certs| certs.first().map(|c| c.as_ref().to_vec())),
        };
        self.access.check(req.metadata(), &info, ask).await
    }

    /// Proposes `op` on behalf of `grant` and waits for it to be applied (and, briefly, for
    /// this node's replica to apply it too, so a read here sees it).
    /// The outer error is the transport (no leader, timeout); the inner one the model's answer.
    pub async fn propose(&self, grant: &Grant, op: pb::command::Op) -> Result<Result<Committed, ModelError>, ApiError> {
        self.propose_as(grant, grant.request_id(), op).await
    }

    /// [`Core::propose`] under `request_id`: the grant's own, or one attempt of it (see
    /// [`crate::request_ids::attempt`]).
    pub async fn propose_as(
        &self,
        grant: &Grant,
        request_id: &str,
        op: pb::command::Op,
    ) -> Result<Result<Committed, ModelError>, ApiError> {
        let cmd = pb::Command {
            proposed_at_ms: crate::time::now_ms(),
            principal: grant.principal().id.clone(),
            request_id: request_id.to_string(),
            op: Some(op),
        };
        let result = self.raft.propose(cmd, self.write_timeout).await.map_err(|e| match e {
            ProposeError::Unavailable(m) => ApiError::NoLeader(m),
            ProposeError::Rejected(m) => ApiError::FailedPrecondition(m),
        })?;
        self.raft
            .reader()
            .wait_applied(result.log_index, LOCAL_APPLY_WAIT)
            .await;
        if result.replayed {
            metrics::counter!("coffer_requests_replayed_total").increment(1);
        }
        Ok(match result.outcome {
            Some(pb::command_result::Outcome::Ok(ok)) => Ok(Committed {
                ok,
                index: result.log_index,
                replayed: result.replayed,
            }),
            Some(pb::command_result::Outcome::Error(e)) => Err(ModelError::from_pb(&e)),
            None => Err(ModelError::new(
                pb::ErrorCode::Internal,
                "the command produced no result",
            )),
        })
    }

    /// Looks something up on this replica; when it is not there, looks again once this replica
    /// has caught up with the leader (a read index), so that a record written a moment ago
    /// through another node is never reported missing because this replica lags.
    pub async fn find_fresh<T>(
        &self,
        find: impl Fn(&dyn KvView) -> Result<Option<T>, ApiError>,
    ) -> Result<Option<T>, ApiError> {
        let reader = self.raft.reader();
        if let Some(found) = find(&*reader.view())? {
            return Ok(Some(found));
        }
        self.catch_up().await.map_err(|e| match e {
            CatchUp::NoLeader(e) => ApiError::NoLeader(format!(
                "not found on this replica, and it cannot confirm with the leader: {e}"
            )),
            CatchUp::Behind { index, .. } => ApiError::NotCaughtUp(format!(
                "not found on this replica, which did not catch up to index {index} within {} ms to confirm; retry",
                LINEARIZABLE_WAIT.as_millis()
            )),
        })?;
        let view = reader.view();
        find(&*view)
    }

    /// Makes this replica as fresh as the leader was a moment ago: a read index from the
    /// leader, then waits until this replica has applied it. A read after this is linearizable.
    async fn catch_up(&self) -> Result<(), CatchUp> {
        let index = self
            .raft
            .read_index(LINEARIZABLE_WAIT)
            .await
            .map_err(CatchUp::NoLeader)?;
        let reader = self.raft.reader();
        if !reader.wait_applied(index, LINEARIZABLE_WAIT).await {
            return Err(CatchUp::Behind {
                index,
                applied: reader.applied_index(),
            });
        }
        Ok(())
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
        let info = {
            let view = self.raft.reader().view();
            query::cluster_info(&*view)?
        };
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

    /// Refuses reads on a node that is not (or no longer) a member.
    fn check_member(&self) -> Result<(), ApiError> {
        match self.raft.role_and_membership().1 {
            Membership::Member => Ok(()),
            Membership::NotJoined => Err(ApiError::NotAMember(
                "this node has not joined a cluster yet; read from a member node".into(),
            )),
            Membership::Removed => Err(ApiError::NodeRemoved(
                "this node was removed from the cluster and its data is no longer current; read from a member node"
                    .into(),
            )),
        }
    }

    /// Serves `query` with the requested consistency: from this replica when it is fresh enough
    /// (waiting for it if needed), or from the leader's records for a bounded read that asked
    /// to forward. Values are always decrypted by the caller on this node.
    pub async fn read(
        &self,
        consistency: &Option<pb::ReadConsistency>,
        query: pb::ReadQuery,
    ) -> Result<ReadOutcome, ApiError> {
        use pb::read_consistency::Mode;
        self.check_member()?;
        let reader = self.raft.reader();
        let wait = |ms: u64, default: Duration| if ms == 0 { default } else { Duration::from_millis(ms) };
        match consistency.as_ref().and_then(|c| c.mode.as_ref()) {
            None | Some(Mode::Local(_)) => {}
            Some(Mode::Linearizable(_)) => self.catch_up().await.map_err(|e| match e {
                CatchUp::NoLeader(e) => ApiError::NoLeader(format!(
                    "linearizable read: {e}; try again or read with a weaker consistency"
                )),
                CatchUp::Behind { index, applied } => ApiError::NotCaughtUp(format!(
                    "linearizable read: this replica did not apply index {index} within {} ms (it has {applied}); \
                     try again or read from another node",
                    LINEARIZABLE_WAIT.as_millis(),
                )),
            })?,
            Some(Mode::AtLeast(a)) => {
                let key = self.token_key().await?.ok_or_else(|| {
                    ApiError::Unavailable("the cluster has no token key yet; retry in a moment".into())
                })?;
                let index = key.verify(&a.token)?;
                let max = wait(a.max_wait_ms, AT_LEAST_WAIT);
                if !reader.wait_applied(index, max).await {
                    return Err(ApiError::NotCaughtUp(format!(
                        "this replica has applied index {} but the token needs {index}; it did not catch up within \
                         {} ms; retry or read from another node",
                        reader.applied_index(),
                        max.as_millis()
                    )));
                }
            }
            Some(Mode::Bounded(b)) => {
                let max_wait = wait(b.max_wait_ms, BOUNDED_WAIT);
                let deadline = tokio::time::Instant::now() + max_wait;
                let mut bound = self.raft.staleness_bound_ms();
                while bound > b.max_staleness_ms && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    bound = self.raft.staleness_bound_ms();
                }
                if bound > b.max_staleness_ms {
                    return match b.on_unmet.as_str() {
                        "forward" => self.read_from_leader(query).await,
                        "" | "fail" => Err(ApiError::StalenessUnmet(format!(
                            "this replica's staleness bound is {bound} ms, above the requested {} ms, after waiting \
                             {} ms; retry, read elsewhere, or pass on_unmet=forward",
                            b.max_staleness_ms,
                            max_wait.as_millis()
                        ))),
                        other => Err(ApiError::invalid(format!("on_unmet {other:?} must be fail or forward"))),
                    };
                }
            }
        }
        self.read_locally(query, consistency_label(consistency)).await
    }

    async fn read_locally(&self, query: pb::ReadQuery, label: &str) -> Result<ReadOutcome, ApiError> {
        let reader = self.raft.reader();
        let staleness = self.raft.staleness_bound_ms();
        let (role, _) = self.raft.role_and_membership();
        // The index comes from the view that answers: it names exactly the state the answer
        // was read from (the last applied entry is written in the same batch as its effects).
        let (answer, applied) = {
            let view = reader.view();
            (
                query::answer(&*view, &query)?,
                coffer_raft::state_machine::applied_index_in(&*view).map_err(query::QueryError::Io)?,
            )
        };
        Ok(ReadOutcome {
            answer,
            meta: pb::ReadMeta {
                applied_index: applied,
                staleness_upper_bound_ms: staleness,
                served_by: Some(self.served_by(role.as_str())),
                consistency: label.to_string(),
                token: self.mint(applied).await?,
            },
        })
    }

    async fn read_from_leader(&self, query: pb::ReadQuery) -> Result<ReadOutcome, ApiError> {
        let r = self
            .raft
            .fetch_from_leader(query, BOUNDED_WAIT)
            .await
            .map_err(|e| ApiError::Unavailable(format!("forwarding the read to the leader failed: {e}")))?;
        let answer = match r.result {
            Some(pb::fetch_response::Result::Answer(a)) => a,
            Some(pb::fetch_response::Result::Error(e)) => return Err(ModelError::from_pb(&e).into()),
            _ => return Err(ApiError::internal("unexpected reply to a forwarded read")),
        };
        let leader = r.served_by.unwrap_or_default();
        Ok(ReadOutcome {
            answer,
            meta: pb::ReadMeta {
                applied_index: r.applied_index,
                staleness_upper_bound_ms: r.staleness_upper_bound_ms,
                served_by: Some(pb::ServedBy {
                    node_id: leader.id,
                    node: leader.name,
                    region: leader.region,
                    role: "leader".into(),
                }),
                consistency: "bounded".into(),
                token: self.mint(r.applied_index).await?,
            },
        })
    }
}

//! The one read path: every read is a query answered from this replica's records with a
//! consistency mode (waiting, catching up or forwarding to the leader as the mode asks), and
//! reported with the index it reflects, its staleness bound and who served it. Values are
//! decrypted by the caller on this node, never by the leader.

use std::time::Duration;

use coffer_kv::KvView;
use coffer_model::error::ModelError;
use coffer_model::query;
use coffer_raft::error::ProposeError;

use super::Service;
use crate::error::ApiError;
use crate::pb;

/// Default waits of the consistency modes.
const BOUNDED_WAIT: Duration = Duration::from_millis(1000);
const AT_LEAST_WAIT: Duration = Duration::from_millis(5000);
const LINEARIZABLE_WAIT: Duration = Duration::from_millis(5000);

/// Longest wait a client may ask a read for (well under the API's 60 s request timeout): a
/// longer one would hold the request until the client gives up.
pub const MAX_READ_WAIT: Duration = Duration::from_millis(30_000);

/// Refuses a consistency request the read would not honour as asked: a wait above
/// [`MAX_READ_WAIT`], an `on_unmet` other than `fail` or `forward` (even when the bound is
/// met, so a typo never passes silently).
/// The consistency mode's name, as metrics label it.
fn consistency_name(c: &Option<pb::ReadConsistency>) -> &'static str {
    use pb::read_consistency::Mode;
    match c.as_ref().and_then(|c| c.mode.as_ref()) {
        None | Some(Mode::Local(_)) => "local",
        Some(Mode::Linearizable(_)) => "linearizable",
        Some(Mode::Bounded(_)) => "bounded",
        Some(Mode::AtLeast(_)) => "at_least",
    }
}

pub fn check_consistency(c: &Option<pb::ReadConsistency>) -> Result<(), ApiError> {
    use pb::read_consistency::Mode;
    let check_wait = |what: &str, ms: u64| {
        if ms > MAX_READ_WAIT.as_millis() as u64 {
            return Err(ApiError::invalid(format!(
                "{what}.max_wait_ms {ms} is above the limit of {} ms",
                MAX_READ_WAIT.as_millis()
            )));
        }
        Ok(())
    };
    match c.as_ref().and_then(|c| c.mode.as_ref()) {
        Some(Mode::Bounded(b)) => {
            check_wait("bounded", b.max_wait_ms)?;
            if !matches!(b.on_unmet.as_str(), "" | "fail" | "forward") {
                // Shown escaped ({:?}) and cut short: it comes from the client.
                let shown: String = b.on_unmet.chars().take(32).collect();
                return Err(ApiError::invalid(format!(
                    "bounded.on_unmet {shown:?} must be \"fail\" or \"forward\""
                )));
            }
            Ok(())
        }
        Some(Mode::AtLeast(a)) => check_wait("at_least", a.max_wait_ms),
        None | Some(Mode::Local(_)) | Some(Mode::Linearizable(_)) => Ok(()),
    }
}

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

/// Why [`Service::catch_up`] failed.
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

impl Service {
    /// Serves `query` with the requested consistency: from this replica when it is fresh enough
    /// (waiting for it if needed), or from the leader's records for a bounded read that asked
    /// to forward. Values are always decrypted by the caller on this node.
    ///
    /// Timed as `coffer_read_seconds{consistency, result}` (the wait and the query; decryption
    /// is the caller's).
    pub async fn read(
        &self,
        consistency: &Option<pb::ReadConsistency>,
        query: pb::ReadQuery,
    ) -> Result<ReadOutcome, ApiError> {
        let started = std::time::Instant::now();
        let r = self.read_untimed(consistency, query).await;
        metrics::histogram!(
            "coffer_read_seconds",
            "consistency" => consistency_name(consistency),
            "result" => if r.is_ok() { "ok" } else { "error" }
        )
        .record(started.elapsed().as_secs_f64());
        r
    }

    async fn read_untimed(
        &self,
        consistency: &Option<pb::ReadConsistency>,
        query: pb::ReadQuery,
    ) -> Result<ReadOutcome, ApiError> {
        use pb::read_consistency::Mode;
        check_consistency(consistency)?;
        self.check_member()?;
        let reader = self.raft.reader();
        let wait = |ms: u64, default: Duration| if ms == 0 { default } else { Duration::from_millis(ms) };
        match consistency.as_ref().and_then(|c| c.mode.as_ref()) {
            None | Some(Mode::Local(_)) => {}
            Some(Mode::Linearizable(_)) => self.catch_up().await.map_err(|e| match e {
                CatchUp::NoLeader(e) => ApiError::NoLeader(format!(
                    "linearizable read: {e}; try again or read with a weaker consistency"
                )),
                CatchUp::Behind { index, applied } => ApiError::NotCaughtUp(match self.raft.disk().refusal() {
                    Some(why) => format!(
                        "linearizable read: this replica is at index {applied}, behind {index}, and cannot \
                         catch up ({why}); read from another node or with a weaker consistency"
                    ),
                    None => format!(
                        "linearizable read: this replica did not apply index {index} within {} ms (it has {applied}); \
                         try again or read from another node",
                        LINEARIZABLE_WAIT.as_millis(),
                    ),
                }),
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
                    // `check_consistency` admitted only "", "fail" and "forward".
                    if b.on_unmet == "forward" {
                        return self.read_from_leader(query).await;
                    }
                    return Err(ApiError::StalenessUnmet(format!(
                        "this replica's staleness bound is {bound} ms, above the requested {} ms, after waiting \
                         {} ms; retry, read elsewhere, or pass on_unmet=forward",
                        b.max_staleness_ms,
                        max_wait.as_millis()
                    )));
                }
            }
        }
        self.read_locally(query, consistency_label(consistency)).await
    }

    /// Answers `query` from one view of this replica, with the index of exactly the state the
    /// answer was read from (the last applied entry is written in the same batch as its
    /// effects). The bottom of every read with a consistency mode.
    fn answer_here(&self, query: &pb::ReadQuery) -> Result<(pb::ReadAnswer, u64), ApiError> {
        let reader = self.raft.reader();
        let view = reader.view();
        Ok((
            query::answer(&*view, query)?,
            coffer_raft::state_machine::applied_index_in(&*view).map_err(query::QueryError::Io)?,
        ))
    }

    async fn read_locally(&self, query: pb::ReadQuery, label: &str) -> Result<ReadOutcome, ApiError> {
        let staleness = self.raft.staleness_bound_ms();
        let (role, _) = self.raft.role_and_membership();
        let (answer, applied) = self.answer_here(&query)?;
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
    /// A linearizable barrier for `what`: when it returns Ok, this replica has applied every
    /// write acknowledged before the call.
    pub(super) async fn caught_up(&self, what: &str) -> Result<(), ApiError> {
        self.catch_up().await.map_err(|e| match e {
            CatchUp::NoLeader(e) => ApiError::NoLeader(format!("{what}: {e}; try again")),
            CatchUp::Behind { index, applied } => ApiError::NotCaughtUp(format!(
                "{what}: this replica is at index {applied}, behind {index}; try again or use another node"
            )),
        })
    }

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

    /// The secret and one version of it (its record: the caller opens the value): by number,
    /// by alias, or CURRENT without a selector.
    pub async fn get_version(
        &self,
        consistency: &Option<pb::ReadConsistency>,
        name: &str,
        selector: Option<pb::get_query::Selector>,
    ) -> Result<Read<VersionRead>, ApiError> {
        let q = pb::read_query::Query::Get(pb::GetQuery {
            name: name.to_string(),
            selector,
        });
        let out = self.read(consistency, ask(q)).await?;
        let mut versions = out.answer.versions.into_iter();
        let (Some(secret), Some(version), None) = (out.answer.secret, versions.next(), versions.next()) else {
            return Err(malformed("a get", "one secret and one version"));
        };
        Ok(Read {
            value: VersionRead { secret, version },
            meta: out.meta,
        })
    }

    /// The secret and a page of its versions numbered above `after` (records without
    /// ciphertext), with the page token of the next page (empty on the last).
    pub async fn versions(
        &self,
        consistency: &Option<pb::ReadConsistency>,
        name: &str,
        after: u64,
        limit: u32,
    ) -> Result<Read<(pb::Secret, Vec<pb::SecretVersion>, String)>, ApiError> {
        let q = pb::read_query::Query::VersionsPage(pb::VersionsQuery {
            name: name.to_string(),
            after,
            limit,
        });
        let out = self.read(consistency, ask(q)).await?;
        let secret = out
            .answer
            .secret
            .ok_or_else(|| malformed("a versions read", "the secret"))?;
        Ok(Read {
            value: (secret, out.answer.versions, out.answer.next_page_token),
            meta: out.meta,
        })
    }

    /// The secret's record: owner, labels, aliases, next version, etag.
    pub async fn describe(
        &self,
        consistency: &Option<pb::ReadConsistency>,
        name: &str,
    ) -> Result<Read<pb::Secret>, ApiError> {
        let out = self
            .read(consistency, ask(pb::read_query::Query::Describe(name.to_string())))
            .await?;
        let secret = out.answer.secret.ok_or_else(|| malformed("a describe", "the secret"))?;
        Ok(Read {
            value: secret,
            meta: out.meta,
        })
    }

    /// One page of the names under `prefix` (a whole folder, `acme/app/`), after `after`.
    pub async fn list(
        &self,
        consistency: &Option<pb::ReadConsistency>,
        page: pb::ListQuery,
    ) -> Result<Read<Page>, ApiError> {
        let out = self.read(consistency, ask(pb::read_query::Query::List(page))).await?;
        Ok(Read {
            value: Page {
                names: out.answer.names,
                next_page_token: out.answer.next_page_token,
            },
            meta: out.meta,
        })
    }

    /// The cluster record (id, root token hash, token key, regions) as this replica has it;
    /// `None` before the bootstrap is applied here.
    pub fn cluster_here(&self) -> Result<Option<pb::ClusterInfo>, ApiError> {
        Ok(query::cluster_info(&*self.raft.reader().view())?)
    }

    /// What this replica holds of this node's audit log's anchors ([`crate::audit::anchor`]).
    pub fn audit_anchors_here(&self) -> Result<crate::audit::chain::Anchors, ApiError> {
        let anchors = query::audit_anchors(&*self.raft.reader().view(), self.me.id)?;
        Ok(anchors
            .map(|a| crate::audit::chain::Anchors::from_pb(&a))
            .unwrap_or_default())
    }

    /// The secret as this replica has it now, with no consistency wait: what a write expects
    /// (the next version number, where an alias points) before the leader checks it again.
    pub fn secret_here(&self, name: &str) -> Result<pb::Secret, ApiError> {
        // What a Describe answers, without the applied index a write's guess does not need.
        Ok(query::secret(&*self.raft.reader().view(), name)?)
    }
}

fn ask(q: pb::read_query::Query) -> pb::ReadQuery {
    pb::ReadQuery { query: Some(q) }
}

/// An answer that lacks what its query always returns: only a peer (a forwarded read's leader)
/// can send one, so it is that peer's fault, reported as such.
fn malformed(what: &str, missing: &str) -> ApiError {
    ApiError::Internal(format!("{what} was answered without {missing}"))
}

/// A read's typed value and what it reflects (index, staleness bound, who served it, token).
pub struct Read<T> {
    pub value: T,
    pub meta: pb::ReadMeta,
}

/// What a `get` resolved: the secret and the one version asked for.
pub struct VersionRead {
    pub secret: pb::Secret,
    pub version: pb::SecretVersion,
}

/// One page of a listing.
pub struct Page {
    pub names: Vec<String>,
    /// Where the next page starts; empty after the last.
    pub next_page_token: String,
}

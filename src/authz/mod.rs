//! Identities and the one authorization seam.
//!
//! Every API call goes through [`Seam::check`]: it resolves the principal from the bearer
//! token, decides with [`Seam::authorize`], and emits one audit event, allowed or denied.
//! Value reads and puts record what they did as well: the version read or written
//! ([`outcome`]).
//! Handlers can only reach the secrets model with the [`Grant`] it returns, and a `Grant` cannot
//! be built anywhere else, so no call path bypasses the seam.
//!
//! Identities: bearer tokens (stored as SHA-256 hashes in the replicated state, with expiry and
//! revocation), the bootstrap root token until it is revoked, and mTLS client certificates
//! (principal from the URI SAN `coffer://principal/<id>`). A token wins over a certificate.
//! Decisions come from [`policy`] over the replicated policies, on this node, with no network.

pub mod action;
pub mod anonymous;
pub mod outcome;
pub mod policy;

pub use action::Action;
pub use anonymous::AnonymousLimit;

use anonymous::Verdict;

use std::sync::Arc;

use sha2::Digest;
use sha2::Sha256;
use tonic::metadata::MetadataMap;

use coffer_model::access_records;
use coffer_model::names;

use crate::audit::AuditSink;
use crate::error::ApiError;
use crate::model::query;
use crate::pb;
use crate::raft::state_machine::StateReader;

/// Token prefix, so leaked tokens are easy to recognise and scan for.
pub const TOKEN_PREFIX: &str = "cft_";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: String,
}

/// The principal id of the bootstrap root token.
pub const ROOT_PRINCIPAL: &str = "root";

/// Proof that one request was authenticated, authorized and audited for `action` on `resource`.
#[derive(Debug, Clone)]
pub struct Grant {
    principal: Principal,
    action: Action,
    resource: String,
    request_id: String,
    /// The request carried a valid token or client certificate (an open action such as
    /// health is granted to anonymous callers too).
    authenticated: bool,
}

impl Grant {
    pub fn authenticated(&self) -> bool {
        self.authenticated
    }
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

/// Where the request came from, for authentication and the audit record.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    pub source: String,
    /// The leaf certificate the client presented over mTLS (DER), if any.
    pub client_cert: Option<Vec<u8>>,
}

/// What a request asks to do.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// The first of these the caller holds is granted (metadata reads accept several).
    pub actions: &'a [Action],
    /// A secret name or list prefix for secrets actions; a fixed resource otherwise.
    pub resource: &'a str,
    /// Requested version (0 = none), for the audit record.
    pub version: u64,
    /// Read consistency mode, for the audit record.
    pub consistency: &'a str,
    pub break_glass: Option<BreakGlass<'a>>,
    /// Grants the caller must hold as well (every one), and why, for requests whose effect
    /// reaches past their resource (a policy document, the policies a token carries).
    pub also: &'a [(Action, String)],
    pub also_why: &'a str,
}

#[derive(Debug, Clone, Copy)]
pub struct BreakGlass<'a> {
    pub reason: &'a str,
    pub ticket: &'a str,
}

impl<'a> Ask<'a> {
    pub fn new(action: &'a [Action], resource: &'a str) -> Self {
        Self {
            actions: action,
            resource,
            version: 0,
            consistency: "",
            break_glass: None,
            also: &[],
            also_why: "",
        }
    }
}

/// Who is calling, once authenticated.
enum Identity {
    Root,
    Token(Arc<TokenGrant>),
    Cert(String),
    Anonymous,
}

/// A token's record and the policies it names, read together from one replica view.
struct TokenGrant {
    record: pb::TokenRecord,
    policies: Vec<pb::Policy>,
}

/// Most tokens kept in the cache; past it, lookups still work but are not kept.
const MAX_CACHED_TOKENS: usize = 10_000;

/// What authentication and authorization read from the replica (the cluster record, token
/// grants, every policy for certificate callers), kept while the replica's access epoch stays
/// the same ([`StateReader::access_epoch`]): a policy, token or cluster-record change empties
/// it, so a decision is never based on older access data than the epoch read before it.
/// Expiry is time, not state: it is checked on every request against the cached record.
#[derive(Default)]
struct AccessCache {
    epoch: u64,
    cluster: Option<Arc<pb::ClusterInfo>>,
    tokens: std::collections::HashMap<[u8; 32], Arc<TokenGrant>>,
    all_policies: Option<Arc<Vec<pb::Policy>>>,
}

impl Identity {
    fn principal(&self) -> &str {
        match self {
            Identity::Root => ROOT_PRINCIPAL,
            Identity::Token(t) => &t.record.principal,
            Identity::Cert(p) => p,
            Identity::Anonymous => "anonymous",
        }
    }

    fn credential(&self) -> String {
        match self {
            Identity::Root => "token:root".into(),
            Identity::Token(t) => format!("token:{}", t.record.accessor),
            Identity::Cert(_) => "mtls".into(),
            Identity::Anonymous => String::new(),
        }
    }
}

/// An allowed request: the action granted and the statement that decided.
struct Allowed {
    action: Action,
    statement: String,
}

pub struct Seam {
    state: StateReader,
    audit: Arc<dyn AuditSink>,
    node: String,
    region: String,
    cache: std::sync::Mutex<AccessCache>,
    anonymous: AnonymousLimit,
}

impl Seam {
    pub fn new(state: StateReader, audit: Arc<dyn AuditSink>, node: String, region: String) -> Self {
        Self {
            state,
            audit,
            node,
            region,
            cache: Default::default(),
            anonymous: AnonymousLimit::new(anonymous::DEFAULT_PER_SEC, anonymous::DEFAULT_BURST),
        }
    }

    /// Limits unauthenticated requests per source to `limit` (default: [`anonymous`]'s).
    pub fn with_anonymous_limit(self, limit: AnonymousLimit) -> Self {
        Self {
            anonymous: limit,
            ..self
        }
    }

    /// Runs `f` on the cache of access epoch `epoch` (emptied first when the epoch moved on).
    /// A caller that read an older epoch than the cache's gets `None` and reads the replica.
    fn with_cache<T>(&self, epoch: u64, f: impl FnOnce(&mut AccessCache) -> T) -> Option<T> {
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if epoch > c.epoch {
            *c = AccessCache {
                epoch,
                ..Default::default()
            };
        }
        (epoch == c.epoch).then(|| f(&mut c))
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The seam: authenticate, authorize and audit one request. The request proceeds only
    /// once its audit record is durable; when it cannot be written the request fails.
    pub async fn check(&self, meta: &MetadataMap, info: &RequestInfo, ask: Ask<'_>) -> Result<Grant, ApiError> {
        let (grant, event) = self.decide(meta, info, ask).await?;
        self.record(event).await?;
        Ok(grant)
    }

    /// Writes `event` durably, or fails the request (fail closed).
    pub(crate) async fn record(&self, event: pb::AuditEvent) -> Result<(), ApiError> {
        self.audit
            .record(event)
            .await
            .map_err(|e| ApiError::AuditUnavailable(e.to_string()))
    }

    /// Authenticates and authorizes one request and builds its audit record. A denial is
    /// recorded here and returned as the error; an allowed request's record is returned for
    /// the caller to write ([`Seam::check`] at once, [`Seam::check_deferred`] with its outcome).
    ///
    /// Timed as `coffer_authz_decision_seconds` (a denial's audit write included).
    async fn decide(
        &self,
        meta: &MetadataMap,
        info: &RequestInfo,
        ask: Ask<'_>,
    ) -> Result<(Grant, pb::AuditEvent), ApiError> {
        let started = std::time::Instant::now();
        let r = self.decide_untimed(meta, info, ask).await;
        metrics::histogram!("coffer_authz_decision_seconds").record(started.elapsed().as_secs_f64());
        r
    }

    async fn decide_untimed(
        &self,
        meta: &MetadataMap,
        info: &RequestInfo,
        ask: Ask<'_>,
    ) -> Result<(Grant, pb::AuditEvent), ApiError> {
        let fresh_id = crate::request_ids::fresh().map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let client_id = crate::request_ids::from_metadata(meta);
        let now = crate::time::now_ms();
        // An empty list never falls back to anything (least of all open health): refuse.
        let Some(&first) = ask.actions.first() else {
            return Err(ApiError::internal("a request asked for no action"));
        };
        let authenticated = self.authenticate(meta, info, now);
        // A caller without credentials spends a bounded rate of audit records per source; past
        // it, only the first refusal is recorded (see [`anonymous`]).
        let limited = match &authenticated {
            Ok(_) => None,
            Err(_) => match self.anonymous.charge(&info.source, tokio::time::Instant::now()) {
                Verdict::Admit => None,
                Verdict::Refuse { first, retry_after } => {
                    metrics::counter!("coffer_anonymous_rate_limited_total").increment(1);
                    let e = ApiError::RateLimited(format!(
                        "too many unauthenticated requests from this address; retry in {} ms or authenticate",
                        retry_after.as_millis().max(1)
                    ));
                    if !first {
                        return Err(e);
                    }
                    Some(e)
                }
            },
        };
        let (identity, decision) = match (limited, authenticated) {
            (Some(e), _) => (Identity::Anonymous, Err(e)),
            (None, Ok(id)) => {
                let d = self.authorize(&id, &ask, first, now);
                (id, d)
            }
            (None, Err(_)) if first == Action::Health => (
                Identity::Anonymous,
                Ok(Allowed {
                    action: Action::Health,
                    statement: "health is open to everyone".into(),
                }),
            ),
            (None, Err(e)) => (Identity::Anonymous, Err(e)),
        };
        // A malformed request id is refused like any bad input (and audited as such); a good
        // one is scoped by the principal that sent it.
        let (decision, request_id) = match (decision, client_id) {
            (Ok(_), Err(e)) => (Err(ApiError::invalid(e)), fresh_id),
            (Ok(a), Ok(Some(id))) => (Ok(a), crate::request_ids::scoped(identity.principal(), &id)),
            (d, _) => (d, fresh_id),
        };
        let break_glass = decision.as_ref().map_or(first, |a| a.action) == Action::SecretsReadBreakGlass;
        let (action, verdict, statement) = match &decision {
            Ok(a) => (a.action, "allow", a.statement.clone()),
            Err(e) => (first, "deny", e.to_string()),
        };
        let event = crate::audit::bound(pb::AuditEvent {
            time_ms: now,
            node: self.node.clone(),
            region: self.region.clone(),
            principal: identity.principal().to_string(),
            action: action.as_str().to_string(),
            resource: ask.resource.to_string(),
            version: ask.version,
            decision: verdict.to_string(),
            statement,
            request_id: request_id.clone(),
            source: info.source.clone(),
            consistency: ask.consistency.to_string(),
            break_glass,
            reason: ask.break_glass.map(|b| b.reason.to_string()).unwrap_or_default(),
            ticket: ask.break_glass.map(|b| b.ticket.to_string()).unwrap_or_default(),
            // Break-glass reads and failover drills are what an auditor looks for first.
            severity: if break_glass || action == Action::DrillRun {
                "critical"
            } else {
                "info"
            }
            .to_string(),
            credential: identity.credential(),
            outcome: String::new(),
        });
        if break_glass {
            tracing::warn!(
                principal = %event.principal,
                resource = %event.resource,
                decision = %event.decision,
                ticket = %event.ticket,
                request_id = %event.request_id,
                "break-glass read"
            );
            metrics::counter!("coffer_break_glass_reads_total", "decision" => verdict).increment(1);
        }
        metrics::counter!("coffer_authz_decisions_total", "decision" => verdict).increment(1);
        let allowed = match decision {
            Ok(a) => a,
            Err(e) => {
                self.record(event).await?;
                return Err(terse_denial(e, identity.principal(), action, &ask, &request_id));
            }
        };
        let grant = Grant {
            principal: Principal {
                id: identity.principal().to_string(),
            },
            action: allowed.action,
            resource: ask.resource.to_string(),
            request_id,
            authenticated: !matches!(identity, Identity::Anonymous),
        };
        Ok((grant, event))
    }

    /// The names of `names` the caller may see under one of `actions` (a listing shows only
    /// what each name's own decision allows, so a denied sub-folder stays hidden). Not audited:
    /// the listing itself was. An unauthenticated caller sees nothing.
    pub fn visible(
        &self,
        meta: &MetadataMap,
        info: &RequestInfo,
        actions: &[Action],
        names: Vec<String>,
    ) -> Vec<String> {
        self.still_visible(meta, info, actions, names).unwrap_or_default()
    }

    /// [`Seam::visible`] for a caller already admitted (a watch stream): its credential is
    /// checked again, and one that no longer authenticates (a revoked or expired token) is an
    /// error, not an empty answer.
    pub fn still_visible(
        &self,
        meta: &MetadataMap,
        info: &RequestInfo,
        actions: &[Action],
        names: Vec<String>,
    ) -> Result<Vec<String>, ApiError> {
        let Some(&first) = actions.first() else {
            return Ok(vec![]);
        };
        let now = crate::time::now_ms();
        let identity = self.authenticate(meta, info, now)?;
        Ok(names
            .into_iter()
            .filter(|n| self.authorize(&identity, &Ask::new(actions, n), first, now).is_ok())
            .collect())
    }

    fn authenticate(&self, meta: &MetadataMap, info: &RequestInfo, now: u64) -> Result<Identity, ApiError> {
        let Some(header) = meta.get("authorization") else {
            if let Some(der) = &info.client_cert {
                return match crate::tls::cert_principal(der) {
                    Some(p) => Ok(Identity::Cert(p)),
                    None => Err(ApiError::Unauthenticated(
                        "the client certificate names no principal (URI SAN coffer://principal/<id>) and no token \
                         was sent"
                            .into(),
                    )),
                };
            }
            return Err(ApiError::Unauthenticated(
                "missing token: set COFFER_TOKEN or pass --token (or present a client certificate)".into(),
            ));
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::Unauthenticated("malformed authorization header; expected \"Bearer <token>\"".into())
            })?;
        let hash = token_hash(token);
        // Read the epoch before any view, so what is cached under it is at least that new.
        let epoch = self.state.access_epoch();
        let cluster = match self.with_cache(epoch, |c| c.cluster.clone()).flatten() {
            Some(c) => c,
            None => {
                let view = self.state.view();
                let Some(cluster) = query::cluster_info(&*view).map_err(ApiError::from)? else {
                    return Err(ApiError::NotBootstrapped(
                        "the cluster is not bootstrapped yet; wait for the bootstrap node".into(),
                    ));
                };
                let cluster = Arc::new(cluster);
                self.with_cache(epoch, |c| c.cluster = Some(cluster.clone()));
                cluster
            }
        };
        if constant_time_eq(&hash, &cluster.root_token_sha256) {
            if cluster.root_revoked_at_ms != 0 {
                return Err(ApiError::Unauthenticated(format!(
                    "the root token was revoked at {}; use an administrator's token",
                    crate::time::rfc3339_ms(cluster.root_revoked_at_ms)
                )));
            }
            return Ok(Identity::Root);
        }
        let grant = match self.with_cache(epoch, |c| c.tokens.get(&hash).cloned()).flatten() {
            Some(g) => Some(g),
            None => {
                let view = self.state.view();
                match access_records::token_by_hash(&*view, &hash)? {
                    Some(record) => {
                        let mut policies = Vec::new();
                        for name in &record.policies {
                            if let Some(p) = access_records::policy(&*view, name)? {
                                policies.push(p);
                            }
                        }
                        let g = Arc::new(TokenGrant { record, policies });
                        self.with_cache(epoch, |c| {
                            if c.tokens.len() < MAX_CACHED_TOKENS {
                                c.tokens.insert(hash, g.clone());
                            }
                        });
                        Some(g)
                    }
                    None => None,
                }
            }
        };
        match grant {
            // The lookup is by hash; compare again in constant time for good measure.
            Some(g) if constant_time_eq(&g.record.token_sha256, &hash) => {
                let t = &g.record;
                if t.revoked_at_ms != 0 {
                    return Err(ApiError::Unauthenticated(format!(
                        "token {} was revoked at {}; ask an administrator for a new one",
                        t.accessor,
                        crate::time::rfc3339_ms(t.revoked_at_ms)
                    )));
                }
                if now >= t.expires_at_ms {
                    return Err(ApiError::Unauthenticated(format!(
                        "token {} expired at {}; create a new one",
                        t.accessor,
                        crate::time::rfc3339_ms(t.expires_at_ms)
                    )));
                }
                Ok(Identity::Token(g))
            }
            _ => Err(ApiError::Unauthenticated("invalid token: check COFFER_TOKEN".into())),
        }
    }

    /// Decides `ask` for `identity`: the first of its actions (`first` is `ask.actions[0]`) that
    /// is allowed, or the denial of the first action.
    fn authorize(&self, identity: &Identity, ask: &Ask<'_>, first: Action, now: u64) -> Result<Allowed, ApiError> {
        if first == Action::Health {
            return Ok(Allowed {
                action: first,
                statement: "health is open to everyone".into(),
            });
        }
        if first.on_secrets() {
            let valid = if ask.resource.ends_with('/') {
                names::validate_prefix(ask.resource.trim_end_matches('/'))
            } else {
                names::validate_name(ask.resource).or_else(|_| names::validate_prefix(ask.resource))
            };
            if let Err(e) = valid {
                return Err(ApiError::invalid(format!("invalid secret name: {e}")));
            }
        }
        if let Some(b) = ask.break_glass {
            policy::check_break_glass(b.reason, b.ticket).map_err(|e| ApiError::invalid(e.to_string()))?;
        } else if first == Action::SecretsReadBreakGlass {
            return Err(ApiError::invalid("a break-glass read needs --reason and --ticket"));
        }
        let all_policies;
        let (caller_groups, lifetime, policies): (&[String], _, &[pb::Policy]) = match identity {
            Identity::Root => {
                return Ok(Allowed {
                    action: first,
                    statement: "root token".into(),
                })
            }
            Identity::Anonymous => return Err(ApiError::Unauthenticated("no credentials".into())),
            Identity::Token(g) => (
                &g.record.groups,
                Some(g.record.expires_at_ms.saturating_sub(g.record.created_at_ms)),
                &g.policies,
            ),
            Identity::Cert(_) => {
                let epoch = self.state.access_epoch();
                all_policies = match self.with_cache(epoch, |c| c.all_policies.clone()).flatten() {
                    Some(ps) => ps,
                    None => {
                        let view = self.state.view();
                        let ps = Arc::new(access_records::policies(&*view)?);
                        self.with_cache(epoch, |c| c.all_policies = Some(ps.clone()));
                        ps
                    }
                };
                (&[], None, &all_policies)
            }
        };
        let caller = policy::Caller {
            principal: identity.principal(),
            groups: caller_groups,
            token_lifetime_ms: lifetime,
        };
        let decide = |action: Action, resource: &str| {
            policy::decide(
                policies,
                &caller,
                &policy::Query {
                    action,
                    resource,
                    region: &self.region,
                    now_ms: now,
                },
            )
        };
        let mut first_denial = None;
        let mut allowed = None;
        for &action in ask.actions {
            let d = decide(action, ask.resource);
            if d.allowed {
                allowed = Some(Allowed {
                    action,
                    statement: d.statement.map(|s| s.to_string()).unwrap_or_default(),
                });
                break;
            }
            first_denial.get_or_insert(d.explanation);
        }
        let allowed = allowed.ok_or_else(|| ApiError::PermissionDenied(first_denial.unwrap_or_default()))?;
        for (action, resource) in ask.also {
            let d = decide(*action, resource);
            if !d.allowed {
                return Err(ApiError::PermissionDenied(format!(
                    "{}: {} on {resource} is needed as well; {}",
                    ask.also_why,
                    action.as_str(),
                    d.explanation
                )));
            }
        }
        Ok(allowed)
    }
}

/// What a denied caller is told: that it was denied, for which action (and secret), what else
/// the request needed if that was what it lacked ([`Ask::also_why`]), and which request to ask
/// an administrator about. Which policy or statement decided, and whose a token is, stay in the
/// audit record (its `statement`), never in the answer.
fn terse_denial(e: ApiError, principal: &str, action: Action, ask: &Ask<'_>, request_id: &str) -> ApiError {
    let ApiError::PermissionDenied(detail) = &e else {
        return e;
    };
    let what = if action.on_secrets() {
        format!("{} on {}", action.as_str(), ask.resource)
    } else {
        action.as_str().to_string()
    };
    // A missing `also` grant: its reason and the grant it needs (no policy internals), kept.
    let needs = match detail.split_once("; ") {
        Some((head, _)) if !ask.also_why.is_empty() && head.starts_with(ask.also_why) => format!(" ({head})"),
        _ => String::new(),
    };
    ApiError::PermissionDenied(format!(
        "{principal} may not {what}{needs}; an administrator can see why in the audit record of request {request_id}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_say_what_was_denied_and_where_to_look_but_not_why() {
        let read = Ask::new(&[Action::SecretsAdmin], "acme/app/db");
        let detail = ApiError::PermissionDenied(
            "denied by acme-ops#1 (no-app-destroy); token tok-1 belongs to user:alice".into(),
        );
        let m = terse_denial(detail, "group:acme:ops", Action::SecretsAdmin, &read, "req-1").to_string();
        assert!(m.contains("secrets:admin on acme/app/db") && m.contains("req-1"), "{m}");
        for secret in ["acme-ops", "#1", "no-app-destroy", "alice", "tok-1"] {
            assert!(!m.contains(secret), "{m}");
        }
        let token = Ask::new(&[Action::PolicyAdmin], "token/user:alice");
        let detail = ApiError::PermissionDenied("token/user:alice is held by user:alice".into());
        let m = terse_denial(detail, "user:bob", Action::PolicyAdmin, &token, "req-2").to_string();
        assert!(!m.contains("alice"), "a non-secret resource is not echoed: {m}");
        // What else the request needed is said; the policy that failed to grant it is not.
        let mut write = Ask::new(&[Action::PolicyAdmin], "policy/acme-evil");
        write.also_why = "writing a policy needs policy:admin on every policy";
        let detail = ApiError::PermissionDenied(
            "writing a policy needs policy:admin on every policy: policy:admin on policy/* is needed as well; \
             delegates#0 grants policy/acme-*"
                .into(),
        );
        let m = terse_denial(detail, "user:delegate", Action::PolicyAdmin, &write, "req-3").to_string();
        assert!(
            m.contains("policy:admin on every policy") && !m.contains("delegates#0"),
            "{m}"
        );
        // Other errors pass through unchanged.
        let e = terse_denial(
            ApiError::invalid("bad name"),
            "user:bob",
            Action::SecretsRead,
            &read,
            "r",
        );
        assert_eq!(e.to_string(), "bad name");
    }

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

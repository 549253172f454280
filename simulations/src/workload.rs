//! Clients in every region: put, get in every consistency mode, promote with CAS, disable,
//! destroy and create secrets, put and delete policies, create and revoke tokens; each recorded
//! in the history with its invocation and completion times. Half of the secret operations go to
//! one hot secret, so promotes, disables and destroys from several regions race on it.
//!
//! Every write carries a request id (`coffer-request-id`), and an attempt whose outcome is
//! unknown (a timeout, an unavailable node) is sent again with the same id, as a careful client
//! would: the cluster must apply it once and answer every attempt with that one outcome.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use coffer::pb;
use coffer::pb::access_client::AccessClient;
use coffer::pb::secrets_client::SecretsClient;
use tonic::transport::Channel;

use crate::history::policy_object;
use crate::history::token_object;
use crate::history::History;
use crate::history::Kind;
use crate::history::Mode;
use crate::history::Op;
use crate::history::Outcome;
use crate::history::Reply;
use crate::net::VALUE_MARKER;
use crate::rng::SimRng;
use crate::shape::ROOT_TOKEN;

/// How long a client waits for one answer before counting the attempt as unknown.
pub const OP_DEADLINE: Duration = Duration::from_secs(8);
/// Attempts at one write whose outcome stays unknown (the same request id each time).
pub const MAX_ATTEMPTS: u32 = 3;
/// The policy every token the workload creates names (made by the setup).
pub const TOKEN_POLICY: &str = "sim-read";
/// Principals of tokens created with [`SHORT_TTL_MS`] end with this, so that the checkers know
/// their records may be deleted (`token_gc`) without a revoke.
pub const SHORT_LIVED: &str = "-short";
pub const SHORT_TTL_MS: u64 = 2_000;
/// Policies the workload puts and deletes.
const POLICIES: [&str; 3] = ["p0", "p1", "p2"];

/// What clients have learned, shared so promotes and destroys aim at versions that exist.
#[derive(Default)]
pub struct Knowledge {
    next_value: u64,
    max_version: BTreeMap<String, u64>,
    current: BTreeMap<String, u64>,
}

pub fn now_us() -> u64 {
    turmoil::sim_elapsed().unwrap_or_default().as_micros() as u64
}

pub fn secret_client(addr: &str) -> SecretsClient<Channel> {
    let ch = crate::net::channel(addr, None).expect("valid address");
    SecretsClient::new(ch)
}

/// A secrets client for each (node, address).
pub fn secret_clients(nodes: &[(String, String)]) -> Vec<(String, SecretsClient<Channel>)> {
    nodes
        .iter()
        .map(|(node, addr)| (node.clone(), secret_client(addr)))
        .collect()
}

pub fn access_client(addr: &str) -> AccessClient<Channel> {
    let ch = crate::net::channel(addr, None).expect("valid address");
    AccessClient::new(ch)
}

pub fn request<T>(msg: T) -> tonic::Request<T> {
    let mut r = authorized(msg);
    r.set_timeout(OP_DEADLINE);
    r
}

/// A request with the root token and no deadline (a stream that lasts as long as it is read).
pub fn authorized<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {ROOT_TOKEN}").parse().expect("ascii token"),
    );
    r
}

/// [`request`] carrying the operation's request id.
fn request_as<T>(msg: T, request_id: &str) -> tonic::Request<T> {
    let mut r = request(msg);
    r.metadata_mut().insert(
        coffer::request_ids::HEADER,
        request_id.parse().expect("request ids are ascii"),
    );
    r
}

/// The id a client's request carries in the log (the workload authenticates as root).
pub fn logged_request_id(client_id: &str) -> String {
    coffer::request_ids::scoped(coffer::authz::ROOT_PRINCIPAL, client_id)
}

/// A policy document whose one statement names `acme/v<value>/*`.
pub fn policy_document(name: &str, value: u64) -> String {
    format!(
        r#"{{"name":"{name}","statements":[{{"effect":"allow","principals":["service:acme:sim"],"actions":["secrets:read"],"resources":["acme/v{value}/*"]}}]}}"#
    )
}

fn classify(s: tonic::Status) -> Outcome {
    use tonic::Code;
    match s.code() {
        Code::NotFound | Code::FailedPrecondition | Code::Aborted | Code::InvalidArgument | Code::AlreadyExists => {
            Outcome::Failed(format!("{:?}", s.code()))
        }
        c => Outcome::Unknown(format!("{c:?}: {}", s.message())),
    }
}

pub fn value_bytes(id: u64) -> Vec<u8> {
    [VALUE_MARKER, id.to_string().as_bytes()].concat()
}

pub fn parse_value(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes.strip_prefix(VALUE_MARKER)?)
        .ok()?
        .parse()
        .ok()
}

/// A write's outcome; the token of an acknowledged write comes back beside it.
fn write_outcome(r: Result<tonic::Response<pb::WriteResponse>, tonic::Status>) -> (Outcome, String) {
    match r {
        Ok(w) => {
            let w = w.into_inner();
            let reply = Reply {
                version: w.version,
                log_index: w.log_index,
                ..Default::default()
            };
            (Outcome::Ok(reply), w.token)
        }
        Err(s) => (classify(s), String::new()),
    }
}

/// A session's connections to its node.
pub struct Clients {
    pub secrets: SecretsClient<Channel>,
    pub access: AccessClient<Channel>,
}

/// An acknowledged access operation (no version, no index in its reply).
fn access_outcome<T>(r: Result<tonic::Response<T>, tonic::Status>, accessor: impl FnOnce(T) -> String) -> Outcome {
    match r {
        Ok(w) => Outcome::Ok(Reply {
            accessor: accessor(w.into_inner()),
            ..Default::default()
        }),
        Err(s) => classify(s),
    }
}

/// Runs one attempt of an operation on `object` under `request_id`; never panics, always
/// yields an outcome.
pub async fn perform(
    clients: &mut Clients,
    object: &str,
    kind: &Kind,
    request_id: &str,
    token: &str,
) -> (Outcome, Option<String>) {
    let name = object.to_string();
    let client = &mut clients.secrets;
    let access = &mut clients.access;
    let call = async {
        match kind {
            Kind::Put { value } => {
                let req = pb::PutSecretValueRequest {
                    name,
                    value: value_bytes(*value),
                    alias: String::new(),
                    must_exist: false,
                    ..Default::default()
                };
                // The caller keeps a token only from an acknowledged write.
                let (outcome, token) = write_outcome(client.put_secret_value(request_as(req, request_id)).await);
                (outcome, Some(token))
            }
            Kind::Create => {
                let req = pb::CreateSecretRequest { name, spec: None };
                (
                    write_outcome(client.create_secret(request_as(req, request_id)).await).0,
                    None,
                )
            }
            Kind::PutPolicy { value } => {
                let policy = object.strip_prefix("policy:").unwrap_or(object);
                let req = pb::PutPolicyRequest {
                    document: policy_document(policy, *value),
                };
                let r = access.put_policy(request_as(req, request_id)).await;
                let outcome = match r {
                    Ok(w) => Outcome::Ok(Reply {
                        log_index: w.into_inner().log_index,
                        ..Default::default()
                    }),
                    Err(s) => classify(s),
                };
                (outcome, None)
            }
            Kind::DeletePolicy => {
                let policy = object.strip_prefix("policy:").unwrap_or(object).to_string();
                let req = pb::DeletePolicyRequest { name: policy };
                (
                    access_outcome(access.delete_policy(request_as(req, request_id)).await, |_| {
                        String::new()
                    }),
                    None,
                )
            }
            Kind::CreateToken => {
                let principal = object.strip_prefix("token:").unwrap_or(object).to_string();
                let req = pb::CreateTokenRequest {
                    principal,
                    tenant: String::new(),
                    groups: vec![],
                    policies: vec![TOKEN_POLICY.to_string()],
                    ttl_ms: if object.ends_with(SHORT_LIVED) {
                        SHORT_TTL_MS
                    } else {
                        3_600_000
                    },
                };
                (
                    access_outcome(access.create_token(request_as(req, request_id)).await, |r| r.accessor),
                    None,
                )
            }
            Kind::RevokeToken { accessor } => {
                let req = pb::RevokeTokenRequest {
                    accessor: accessor.clone(),
                };
                (
                    access_outcome(access.revoke_token(request_as(req, request_id)).await, |_| {
                        String::new()
                    }),
                    None,
                )
            }
            Kind::Get { mode } => {
                use pb::read_consistency::Mode as M;
                let m = match mode {
                    Mode::Local => M::Local(pb::LocalRead {}),
                    Mode::Linearizable => M::Linearizable(pb::LinearizableRead {}),
                    Mode::Bounded(ms) => M::Bounded(pb::BoundedRead {
                        max_staleness_ms: *ms,
                        on_unmet: if ms % 2 == 0 { "fail".into() } else { "forward".into() },
                        max_wait_ms: 500,
                    }),
                    Mode::AtLeast(_) => M::AtLeast(pb::AtLeastRead {
                        token: token.to_string(),
                        max_wait_ms: 3000,
                    }),
                };
                let req = pb::GetSecretValueRequest {
                    name,
                    selector: None,
                    consistency: Some(pb::ReadConsistency { mode: Some(m) }),
                    break_glass: None,
                };
                match client.get_secret_value(request_as(req, request_id)).await {
                    Ok(r) => {
                        let r = r.into_inner();
                        let meta = r.read.clone().unwrap_or_default();
                        let reply = Reply {
                            version: r.version,
                            value: parse_value(&r.value),
                            applied_index: meta.applied_index,
                            staleness_ms: meta.staleness_upper_bound_ms,
                            served_by: meta.served_by.map(|s| s.node).unwrap_or_default(),
                            ..Default::default()
                        };
                        (Outcome::Ok(reply), None)
                    }
                    Err(s) => (classify(s), None),
                }
            }
            Kind::Promote { version, expect } => {
                let req = pb::MoveAliasRequest {
                    name,
                    alias: "CURRENT".into(),
                    version: *version,
                    expected_version: Some(*expect),
                };
                (
                    write_outcome(client.move_alias(request_as(req, request_id)).await).0,
                    None,
                )
            }
            Kind::Disable { version } => {
                let req = pb::SetVersionStateRequest {
                    name,
                    version: *version,
                    enabled: false,
                };
                (
                    write_outcome(client.set_version_state(request_as(req, request_id)).await).0,
                    None,
                )
            }
            Kind::Destroy { version } => {
                let req = pb::DestroyVersionRequest {
                    name,
                    version: *version,
                };
                (
                    write_outcome(client.destroy_version(request_as(req, request_id)).await).0,
                    None,
                )
            }
        }
    };
    match tokio::time::timeout(OP_DEADLINE + Duration::from_millis(500), call).await {
        Ok(r) => r,
        Err(_) => (Outcome::Unknown("client deadline".into()), None),
    }
}

pub struct ClientPlan {
    pub name: String,
    pub node: String,
    pub addr: String,
    pub secrets: Vec<String>,
    pub rng: SimRng,
}

/// What one client chose to do next.
fn choose(
    plan: &mut ClientPlan,
    k: &mut Knowledge,
    token: &Option<(String, u64)>,
    mine: &mut Vec<(String, String)>,
    n: u64,
) -> (String, Kind) {
    // Half of the secret operations go to the first (hot) secret.
    let secret = if plan.rng.percent(50) {
        plan.secrets[0].clone()
    } else {
        plan.rng.pick(&plan.secrets).clone()
    };
    let max = k.max_version.get(&secret).copied().unwrap_or(0);
    // Promotes, disables and destroys aim at versions max_versions may not have pruned yet.
    let recent = max.saturating_sub(2 * crate::shape::SIM_MAX_VERSIONS).max(1);
    let roll = plan.rng.below(100);
    let put = |k: &mut Knowledge| {
        k.next_value += 1;
        Kind::Put { value: k.next_value }
    };
    match roll {
        0..=24 => (secret, put(k)),
        25..=59 => {
            let mode = match plan.rng.below(4) {
                0 => Mode::Local,
                1 => Mode::Linearizable,
                2 => Mode::Bounded(*plan.rng.pick(&[300, 1000, 4001])),
                _ => match token {
                    Some((_, index)) => Mode::AtLeast(*index),
                    None => Mode::Local,
                },
            };
            (secret, Kind::Get { mode })
        }
        60..=71 if max > 0 => {
            let expect = k.current.get(&secret).copied().unwrap_or(0);
            // Usually what we believe CURRENT is; sometimes a stale guess.
            let expect = if plan.rng.percent(80) {
                expect
            } else {
                plan.rng.range(0, max)
            };
            let version = plan.rng.range(recent, max);
            (secret, Kind::Promote { version, expect })
        }
        72..=79 if max > 0 => {
            let version = plan.rng.range(recent, max);
            (secret, Kind::Disable { version })
        }
        80..=85 if max > 0 => {
            let version = plan.rng.range(recent, max);
            (secret, Kind::Destroy { version })
        }
        86..=87 => (secret, Kind::Create),
        88..=93 => {
            let policy = policy_object(POLICIES[plan.rng.below(POLICIES.len() as u64) as usize]);
            if plan.rng.percent(70) {
                k.next_value += 1;
                (policy, Kind::PutPolicy { value: k.next_value })
            } else {
                (policy, Kind::DeletePolicy)
            }
        }
        94..=99 if !mine.is_empty() && plan.rng.percent(40) => {
            let (principal, accessor) = mine.remove(plan.rng.below(mine.len() as u64) as usize);
            (token_object(&principal), Kind::RevokeToken { accessor })
        }
        94..=99 => (
            token_object(&format!(
                "service:acme:{}-t{n}{}",
                plan.name,
                if plan.rng.percent(30) { SHORT_LIVED } else { "" }
            )),
            Kind::CreateToken,
        ),
        _ => (secret, put(k)),
    }
}

/// How often a pinned scenario's reader asks its node for a bounded read, and the bound.
const READER_EVERY: Duration = Duration::from_millis(20);
const READER_BOUND_MS: u64 = 1000;

/// A reader pinned to one node (scenarios with [`Scenario::bounded_readers`]): a
/// `bounded(1000)` read of `object` every 20 ms until `stop`, so that any window in which the
/// node reports a wrong bound has reads in it.
///
/// [`Scenario::bounded_readers`]: crate::scenarios::Scenario::bounded_readers
pub async fn run_bounded_reader(
    name: String,
    node: String,
    addr: String,
    object: String,
    history: Rc<RefCell<History>>,
    stop: Rc<std::cell::Cell<bool>>,
) -> turmoil::Result {
    let mut clients = Clients {
        secrets: secret_client(&addr),
        access: access_client(&addr),
    };
    let kind = Kind::Get {
        mode: Mode::Bounded(READER_BOUND_MS),
    };
    let mut n = 0u64;
    while !stop.get() {
        tokio::time::sleep(READER_EVERY).await;
        n += 1;
        let request_id = format!("{name}.{n}");
        let invoked_us = now_us();
        let (outcome, _) = perform(&mut clients, &object, &kind, &request_id, "").await;
        let completed_us = now_us();
        let mut h = history.borrow_mut();
        let id = h.ops.len();
        h.ops.push(Op {
            id,
            client: name.clone(),
            node: node.clone(),
            object: object.clone(),
            kind: kind.clone(),
            request_id,
            attempts: 1,
            invoked_us,
            completed_us: Some(completed_us),
            outcome,
        });
    }
    Ok(())
}

/// A client session: one node, one operation at a time, until `stop` is set.
pub async fn run_client(
    mut plan: ClientPlan,
    history: Rc<RefCell<History>>,
    knowledge: Rc<RefCell<Knowledge>>,
    stop: Rc<std::cell::Cell<bool>>,
) -> turmoil::Result {
    let mut clients = Clients {
        secrets: secret_client(&plan.addr),
        access: access_client(&plan.addr),
    };
    // The last write's token and log index, for at_least reads.
    let mut token: Option<(String, u64)> = None;
    // Tokens this client created and has not revoked: (principal, accessor).
    let mut mine: Vec<(String, String)> = Vec::new();
    let mut n = 0u64;
    while !stop.get() {
        let pause = plan.rng.range(20, 300);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        n += 1;
        let (object, kind) = choose(&mut plan, &mut knowledge.borrow_mut(), &token, &mut mine, n);
        let request_id = format!("{}.{n}", plan.name);
        let invoked_us = now_us();
        let tok = token.as_ref().map(|t| t.0.clone()).unwrap_or_default();
        let mut attempts = 0;
        let (outcome, new_token) = loop {
            attempts += 1;
            let (outcome, new_token) = perform(&mut clients, &object, &kind, &request_id, &tok).await;
            // A write whose outcome is unknown is sent again under the same id, unless the
            // run is over (the liveness phase reads the final records).
            let again =
                matches!(outcome, Outcome::Unknown(_)) && kind.is_write() && attempts < MAX_ATTEMPTS && !stop.get();
            if !again {
                break (outcome, new_token);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let completed_us = now_us();
        if let Outcome::Ok(r) = &outcome {
            let mut k = knowledge.borrow_mut();
            let max = k.max_version.entry(object.clone()).or_default();
            *max = (*max).max(r.version);
            match &kind {
                Kind::Put { .. } | Kind::Get { .. } => {
                    k.current.insert(object.clone(), r.version);
                }
                Kind::Promote { version, .. } => {
                    k.current.insert(object.clone(), *version);
                }
                // A short-lived token's record may be gone by the time a revoke reaches it
                // (NotFound), which the sequential model cannot tell: never revoke those.
                Kind::CreateToken if object.ends_with(SHORT_LIVED) => {}
                Kind::CreateToken => {
                    let principal = object.strip_prefix("token:").unwrap_or(&object).to_string();
                    mine.push((principal, r.accessor.clone()));
                }
                _ => {}
            }
            if kind.is_write() && r.log_index > 0 {
                if let Some(t) = new_token.filter(|t| !t.is_empty()) {
                    token = Some((t, r.log_index));
                }
            }
        }
        let mut h = history.borrow_mut();
        let id = h.ops.len();
        h.ops.push(Op {
            id,
            client: plan.name.clone(),
            node: plan.node.clone(),
            object,
            kind,
            request_id,
            attempts,
            invoked_us,
            completed_us: Some(completed_us),
            outcome,
        });
    }
    Ok(())
}

/// How often the rotation reader reads PREVIOUS while it is reading, how long one read may take,
/// and how long its bursts and pauses last.
const PREVIOUS_EVERY: Duration = Duration::from_millis(100);
const PREVIOUS_DEADLINE: Duration = Duration::from_secs(2);
const PREVIOUS_BURST_MS: (u64, u64) = (300, 3_000);
const PREVIOUS_PAUSE_MS: (u64, u64) = (300, 3_000);

/// The rotation reader: reads PREVIOUS of the first rotating secret from a random node, in
/// bursts with pauses between them (so PREVIOUS is now held by use, now free to retire), until
/// `stop`. Every read answered is recorded with the version it returned and when it was asked
/// and answered, on the nodes' clock ([`crate::invariants::rotation_retire_unused`]).
pub async fn run_previous_reader(
    nodes: Vec<(String, String)>,
    mut rng: SimRng,
    history: Rc<RefCell<History>>,
    stop: Rc<std::cell::Cell<bool>>,
) -> turmoil::Result {
    let clients = secret_clients(&nodes);
    let name = crate::rotation_log::ROTATING[0];
    while !stop.get() {
        let burst_ends = coffer::time::now_ms() + rng.range(PREVIOUS_BURST_MS.0, PREVIOUS_BURST_MS.1);
        while !stop.get() && coffer::time::now_ms() < burst_ends {
            let (node, client) = &clients[rng.below(clients.len() as u64) as usize];
            let mut req = request(pb::GetSecretValueRequest {
                name: name.into(),
                selector: Some(pb::get_secret_value_request::Selector::Alias("PREVIOUS".into())),
                consistency: None,
                break_glass: None,
            });
            req.set_timeout(PREVIOUS_DEADLINE);
            let invoked_ms = coffer::time::now_ms();
            let answer = client.clone().get_secret_value(req).await;
            let completed_ms = coffer::time::now_ms();
            if let Ok(r) = answer {
                history
                    .borrow_mut()
                    .rotations
                    .previous_reads
                    .push(crate::rotation_log::PreviousRead {
                        node: node.clone(),
                        name: name.into(),
                        version: r.into_inner().version,
                        invoked_ms,
                        completed_ms,
                    });
            }
            tokio::time::sleep(PREVIOUS_EVERY).await;
        }
        tokio::time::sleep(Duration::from_millis(
            rng.range(PREVIOUS_PAUSE_MS.0, PREVIOUS_PAUSE_MS.1),
        ))
        .await;
    }
    Ok(())
}

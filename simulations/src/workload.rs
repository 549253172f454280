//! Clients in every region: put, get in every consistency mode, promote with CAS, disable and
//! destroy, each recorded in the history with its invocation and completion times.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use coffer::pb;
use coffer::pb::secrets_client::SecretsClient;
use tonic::transport::Channel;

use crate::history::History;
use crate::history::Kind;
use crate::history::Mode;
use crate::history::Op;
use crate::history::Outcome;
use crate::history::Reply;
use crate::net::VALUE_MARKER;
use crate::rng::SimRng;
use crate::shape::ROOT_TOKEN;

/// How long a client waits for one answer before counting the operation as unknown.
pub const OP_DEADLINE: Duration = Duration::from_secs(8);

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

pub fn request<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(OP_DEADLINE);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {ROOT_TOKEN}").parse().expect("ascii token"),
    );
    r
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

/// Runs one operation against `client`; never panics, always yields an outcome.
pub async fn perform(
    client: &mut SecretsClient<Channel>,
    secret: &str,
    kind: &Kind,
    token: &str,
) -> (Outcome, Option<String>) {
    let name = secret.to_string();
    let call = async {
        match kind {
            Kind::Put { value } => {
                let req = pb::PutSecretValueRequest {
                    name,
                    value: value_bytes(*value),
                    alias: String::new(),
                    must_exist: false,
                };
                // The caller keeps a token only from an acknowledged write.
                let (outcome, token) = write_outcome(client.put_secret_value(request(req)).await);
                (outcome, Some(token))
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
                match client.get_secret_value(request(req)).await {
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
                (write_outcome(client.move_alias(request(req)).await).0, None)
            }
            Kind::Disable { version } => {
                let req = pb::SetVersionStateRequest {
                    name,
                    version: *version,
                    enabled: false,
                };
                (write_outcome(client.set_version_state(request(req)).await).0, None)
            }
            Kind::Destroy { version } => {
                let req = pb::DestroyVersionRequest {
                    name,
                    version: *version,
                };
                (write_outcome(client.destroy_version(request(req)).await).0, None)
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

/// A client session: one node, one operation at a time, until `stop` is set.
pub async fn run_client(
    mut plan: ClientPlan,
    history: Rc<RefCell<History>>,
    knowledge: Rc<RefCell<Knowledge>>,
    stop: Rc<std::cell::Cell<bool>>,
) -> turmoil::Result {
    let mut client = secret_client(&plan.addr);
    // The last write's token and log index, for at_least reads.
    let mut token: Option<(String, u64)> = None;
    while !stop.get() {
        let pause = plan.rng.range(20, 300);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let secret = plan.rng.pick(&plan.secrets).clone();
        let kind = {
            let mut k = knowledge.borrow_mut();
            let max = k.max_version.get(&secret).copied().unwrap_or(0);
            let roll = plan.rng.below(100);
            match roll {
                0..=29 => {
                    k.next_value += 1;
                    Kind::Put { value: k.next_value }
                }
                30..=69 => {
                    let mode = match plan.rng.below(4) {
                        0 => Mode::Local,
                        1 => Mode::Linearizable,
                        2 => Mode::Bounded(*plan.rng.pick(&[300, 1000, 4001])),
                        _ => match &token {
                            Some((_, index)) => Mode::AtLeast(*index),
                            None => Mode::Local,
                        },
                    };
                    Kind::Get { mode }
                }
                70..=84 if max > 0 => {
                    let expect = k.current.get(&secret).copied().unwrap_or(0);
                    // Usually what we believe CURRENT is; sometimes a stale guess.
                    let expect = if plan.rng.percent(80) {
                        expect
                    } else {
                        plan.rng.range(0, max)
                    };
                    Kind::Promote {
                        version: plan.rng.range(1, max),
                        expect,
                    }
                }
                85..=93 if max > 0 => Kind::Disable {
                    version: plan.rng.range(1, max),
                },
                _ if max > 0 => Kind::Destroy {
                    version: plan.rng.range(1, max),
                },
                _ => {
                    k.next_value += 1;
                    Kind::Put { value: k.next_value }
                }
            }
        };
        let invoked_us = now_us();
        let tok = token.as_ref().map(|t| t.0.clone()).unwrap_or_default();
        let (outcome, new_token) = perform(&mut client, &secret, &kind, &tok).await;
        let completed_us = now_us();
        if let Outcome::Ok(r) = &outcome {
            let mut k = knowledge.borrow_mut();
            let max = k.max_version.entry(secret.clone()).or_default();
            *max = (*max).max(r.version);
            match &kind {
                Kind::Put { .. } | Kind::Get { .. } => {
                    k.current.insert(secret.clone(), r.version);
                }
                Kind::Promote { version, .. } => {
                    k.current.insert(secret.clone(), *version);
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
            secret,
            kind,
            invoked_us,
            completed_us: Some(completed_us),
            outcome,
        });
    }
    Ok(())
}

//! Setup before the safety phase and the liveness phase after it: with every fault healed,
//! every node serves reads again, every version gets its missing KMS wraps, every node shreds
//! its storage through the last destroy it applied, all replicas converge; then each node's
//! final records are read for the durability check.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use coffer::pb;
use coffer::pb::cluster_client::ClusterClient;
use coffer::pb::kms_client::KmsClient;

use crate::history::FinalSecret;
use crate::history::History;
use crate::workload::parse_value;
use crate::workload::request;
use crate::workload::secret_client;

const POLL: Duration = Duration::from_millis(200);

fn read(name: &str, mode: pb::read_consistency::Mode, version: Option<u64>) -> pb::GetSecretValueRequest {
    pb::GetSecretValueRequest {
        name: name.into(),
        selector: version.map(pb::get_secret_value_request::Selector::Version),
        consistency: Some(pb::ReadConsistency { mode: Some(mode) }),
        break_glass: None,
    }
}

fn linearizable() -> pb::read_consistency::Mode {
    pb::read_consistency::Mode::Linearizable(pb::LinearizableRead {})
}

fn local() -> pb::read_consistency::Mode {
    pb::read_consistency::Mode::Local(pb::LocalRead {})
}

/// The applied index a read reports, or why the node could not serve it.
async fn try_read_index(addr: &str, mode: pb::read_consistency::Mode) -> Result<u64, String> {
    let mut c = secret_client(addr);
    match c.get_secret_value(request(read("acme/s0", mode, None))).await {
        Ok(r) => Ok(r.into_inner().read.map(|m| m.applied_index).unwrap_or(0)),
        // NotFound still proves the read path works; its index is unknown, so use 0.
        Err(s) if s.code() == tonic::Code::NotFound => Ok(0),
        Err(s) => Err(format!("{:?}: {}", s.code(), s.message())),
    }
}

async fn read_index(addr: &str, mode: pb::read_consistency::Mode) -> Option<u64> {
    try_read_index(addr, mode).await.ok()
}

/// Waits until the cluster answers linearizable reads, puts the policy the workload's tokens
/// name, then adds the learners.
pub async fn setup(first: &str, learners: Vec<pb::NodeInfo>) -> turmoil::Result {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while read_index(first, linearizable()).await.is_none() {
        if tokio::time::Instant::now() > deadline {
            return Err("no leader answered a linearizable read within 120 s of start".into());
        }
        tokio::time::sleep(POLL).await;
    }
    let policy = pb::PutPolicyRequest {
        document: crate::workload::policy_document(crate::workload::TOKEN_POLICY, 0),
    };
    while let Err(s) = crate::workload::access_client(first)
        .put_policy(request(policy.clone()))
        .await
    {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("cannot put the policy the workload's tokens use: {}", s.message()).into());
        }
        tokio::time::sleep(POLL).await;
    }
    for (i, name) in crate::rotation_log::ROTATING.iter().enumerate() {
        let create = pb::CreateSecretRequest {
            name: name.to_string(),
            spec: Some(crate::rotation_log::spec(i)),
        };
        loop {
            match crate::workload::secret_client(first)
                .create_secret(request(create.clone()))
                .await
            {
                Ok(_) => break,
                Err(s) if s.code() == tonic::Code::AlreadyExists => break,
                Err(s) if tokio::time::Instant::now() > deadline => {
                    return Err(format!("cannot create the rotating secret {name}: {}", s.message()).into())
                }
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }
    for node in learners {
        let mut c = ClusterClient::new(crate::net::channel(first, None)?);
        loop {
            let req = pb::MembershipChangeRequest {
                change: Some(pb::membership_change_request::Change::AddLearner(node.clone())),
                force: false,
            };
            match c.change_membership(request(req)).await {
                Ok(_) => break,
                Err(s) if s.message().contains("already") => break,
                Err(s) if tokio::time::Instant::now() > deadline => {
                    return Err(format!("cannot add learner {}: {}", node.name, s.message()).into())
                }
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }
    Ok(())
}

/// Polls `probe` until it returns true or the deadline passes.
async fn until<F, Fut>(deadline: tokio::time::Instant, mut probe: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        if probe().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The number of `name`'s newest rotation run, as the leader has it.
async fn rotation_run(addr: &str, name: &str) -> Option<u64> {
    let req = pb::DescribeSecretRequest {
        name: name.into(),
        consistency: Some(pb::ReadConsistency {
            mode: Some(linearizable()),
        }),
    };
    let info = secret_client(addr)
        .describe_secret(request(req))
        .await
        .ok()?
        .into_inner()
        .secret?;
    Some(info.rotation_run.map_or(0, |r| r.run))
}

async fn kms_settled(addr: &str) -> bool {
    let Ok(ch) = crate::net::channel(addr, None) else {
        return false;
    };
    match KmsClient::new(ch).status(request(pb::KmsStatusRequest {})).await {
        Ok(r) => r.into_inner().regions.iter().all(|s| s.versions_missing_wrap == 0),
        Err(_) => false,
    }
}

/// Whether the node's storage is shredded through the last destroy (or install) it applied.
async fn shredded(addr: &str) -> bool {
    let Ok(ch) = crate::net::channel(addr, None) else {
        return false;
    };
    match ClusterClient::new(ch).health(request(pb::HealthRequest {})).await {
        Ok(r) => r
            .into_inner()
            .local
            .is_some_and(|l| l.shredded_through >= l.shred_requested),
        Err(_) => false,
    }
}

async fn final_secret(addr: &str, name: &str) -> Result<FinalSecret, String> {
    let mut c = secret_client(addr);
    let req = pb::ListVersionsRequest {
        name: name.into(),
        consistency: Some(pb::ReadConsistency { mode: Some(local()) }),
        limit: 1000,
        ..Default::default()
    };
    let (versions, index) = match c.list_versions(request(req)).await {
        Ok(r) => {
            let r = r.into_inner();
            if !r.next_page_token.is_empty() {
                return Err(format!(
                    "{name} has more than 1000 versions: the checker reads one page"
                ));
            }
            (r.versions, r.read.map_or(0, |m| m.applied_index))
        }
        Err(s) if s.code() == tonic::Code::NotFound => return Ok(FinalSecret::default()),
        Err(s) => return Err(format!("list versions of {name}: {}", s.message())),
    };
    let mut out = FinalSecret {
        index,
        ..Default::default()
    };
    for v in versions {
        if v.aliases.iter().any(|a| a == "CURRENT") {
            out.current = v.version;
        }
        let state = if v.destroyed_at_ms > 0 {
            "destroyed"
        } else if v.disabled_at_ms > 0 {
            "disabled"
        } else {
            "enabled"
        };
        let value = if state == "enabled" {
            let r = c
                .get_secret_value(request(read(name, local(), Some(v.version))))
                .await
                .map_err(|s| format!("read {name} v{}: {}", v.version, s.message()))?;
            parse_value(&r.into_inner().value)
        } else {
            None
        };
        out.versions.insert(v.version, (value, state.to_string()));
    }
    Ok(out)
}

/// The liveness phase; problems go to `history.liveness`, final records to `history.finals`.
/// `targets` are (node name, region, API address).
pub async fn check(
    targets: Vec<(String, String, String)>,
    secrets: Vec<String>,
    history: Rc<RefCell<History>>,
    limit: Duration,
) {
    let deadline = tokio::time::Instant::now() + limit;
    let fail = |msg: String| history.borrow_mut().liveness.push(msg);
    let mut commit = 0;
    for (node, region, addr) in &targets {
        loop {
            let seen = try_read_index(addr, linearizable()).await;
            let local = try_read_index(addr, local()).await;
            if let (Ok(i), Ok(_)) = (&seen, &local) {
                commit = commit.max(*i);
                break;
            }
            if tokio::time::Instant::now() > deadline {
                let why = seen.err().or(local.err()).unwrap_or_default();
                fail(format!(
                    "{node} ({region}) did not serve linearizable and local reads after healing: {why}"
                ));
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    }
    // Rotations carry on: two more runs start, so the one after healing began has ended. The
    // runs in flight are noted for every secret at once (they rotate side by side).
    let (_, _, first) = &targets[0];
    let mut starts = Vec::new();
    for name in crate::rotation_log::ROTATING {
        starts.push((name, rotation_run(first, name).await.unwrap_or(0)));
    }
    for (name, start) in starts {
        if !until(deadline, || async {
            rotation_run(first, name).await.is_some_and(|r| r >= start + 2)
        })
        .await
        {
            fail(format!(
                "{name}: rotations did not carry on after healing (run {start} was in flight then)"
            ));
        }
    }
    for (node, _, addr) in &targets {
        if !until(deadline, || async {
            read_index(addr, local()).await.is_some_and(|i| i >= commit)
        })
        .await
        {
            fail(format!("{node} did not apply index {commit} after healing"));
        }
        if !until(deadline, || kms_settled(addr)).await {
            fail(format!(
                "{node} still reports versions missing a KMS wrap after healing"
            ));
        }
        if !until(deadline, || shredded(addr)).await {
            fail(format!(
                "{node} did not shred its storage through the last destroy it applied after healing"
            ));
        }
    }
    let mut finals = BTreeMap::new();
    for (node, _, addr) in &targets {
        let mut per = BTreeMap::new();
        for s in &secrets {
            match final_secret(addr, s).await {
                Ok(f) => {
                    per.insert(s.clone(), f);
                }
                Err(e) => fail(format!("{node}: {e}")),
            }
        }
        finals.insert(node.clone(), per);
    }
    history.borrow_mut().finals = finals;
}

//! After a drill: every acknowledged probe write read back from every node, once that node has
//! applied the newest of them (an `at_least` read with its consistency token). A write a node
//! does not hold, or holds with another value, is lost.

use futures::StreamExt as _;

use super::probe::code_of;
use super::probe::probe_secret;
use super::probe::probe_value;
use super::probe::ProbeKind;
use super::probe::Sample;
use super::probe::Target;
use super::report::LostWrite;
use crate::pb;

/// Reads in flight per node.
const IN_FLIGHT: usize = 16;
/// How long a read refused for a resting KMS region is tried again.
const KMS_REST_WAIT: std::time::Duration = std::time::Duration::from_secs(20);
/// How long a node may take to apply the newest acknowledged write.
pub const CATCH_UP_WAIT_MS: u64 = 30_000;

/// The lost writes, and the nodes that could not be checked (with why).
pub async fn verify(
    drill_id: &str,
    nodes: &[Target],
    samples: &[Sample],
    newest_token: &str,
) -> (Vec<LostWrite>, Vec<String>) {
    let acked: Vec<&Sample> = samples.iter().filter(|s| s.kind == ProbeKind::Write && s.ok).collect();
    let mut lost = Vec::new();
    let mut unverified = Vec::new();
    if acked.is_empty() {
        unverified.push("no probe write was acknowledged: nothing to verify".to_string());
        return (lost, unverified);
    }
    for node in nodes {
        let reads = futures::stream::iter(acked.iter().map(|w| read_one(drill_id, node, w, newest_token)))
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<_>>()
            .await;
        let mut problem: Option<String> = None;
        for r in reads {
            match r {
                Check::Held => {}
                Check::Lost(l) => lost.push(l),
                Check::Unknown(why) => {
                    problem.get_or_insert(why);
                }
            }
        }
        if let Some(why) = problem {
            unverified.push(format!("UNVERIFIED: {} could not be checked: {why}", node.name));
        }
    }
    lost.sort_by(|a, b| (&a.secret, a.version, &a.node).cmp(&(&b.secret, b.version, &b.node)));
    (lost, unverified)
}

enum Check {
    Held,
    Lost(LostWrite),
    Unknown(String),
}

async fn read_one(drill_id: &str, node: &Target, w: &Sample, token: &str) -> Check {
    let secret = probe_secret(drill_id, &w.region);
    let req = pb::GetSecretValueRequest {
        name: secret.clone(),
        selector: Some(pb::get_secret_value_request::Selector::Version(w.version)),
        consistency: Some(pb::ReadConsistency {
            mode: Some(pb::read_consistency::Mode::AtLeast(pb::AtLeastRead {
                token: token.to_string(),
                max_wait_ms: CATCH_UP_WAIT_MS,
            })),
        }),
        break_glass: None,
    };
    let lost = |why: String| {
        Check::Lost(LostWrite {
            secret: secret.clone(),
            version: w.version,
            seq: w.seq,
            node: node.name.clone(),
            why,
        })
    };
    // A region whose KMS just failed rests a few seconds (`kms.retry_unhealthy_after_ms`)
    // before it is called again: a read it refuses meanwhile is tried again.
    let deadline = tokio::time::Instant::now() + KMS_REST_WAIT;
    loop {
        match node.client.secrets.clone().get_secret_value(req.clone()).await {
            Ok(r) if r.get_ref().value == probe_value(drill_id, &w.region, w.seq) => return Check::Held,
            Ok(_) => return lost("another value is stored under that version".into()),
            Err(e) => match code_of(&e).as_str() {
                "not_found" | "version_destroyed" | "version_disabled" => {
                    return lost(format!("missing ({})", code_of(&e)))
                }
                "kms_unavailable" if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await
                }
                other => return Check::Unknown(format!("{other}: {}", e.message())),
            },
        }
    }
}

//! Operators change the cluster with the CLI: a learner in a fourth region joins, catches up and
//! serves local reads; it is promoted, demoted and removed; leadership moves on request; and a
//! change that would leave the cluster unable to survive a region's loss is refused. Peer links
//! carry real delay: us-east <-> eu-west 70 ms round trip, every other pair 200 ms.

mod common;

use std::time::Duration;

use coffer::pb;
use common::*;

fn ok(cluster: &TestCluster, via: usize, args: &[&str]) -> String {
    let (code, out, err) = cluster.cli(via, args);
    assert_eq!(code, 0, "coffer {args:?} failed: {err}{out}");
    out
}

/// `cluster status --output json` from node `via`.
fn status_json(cluster: &TestCluster, via: usize) -> serde_json::Value {
    cluster.cli_json(via, &["cluster", "status"])
}

fn role_of(status: &serde_json::Value, name: &str) -> String {
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .map(|n| n["role"].as_str().unwrap().to_string())
        .unwrap_or_else(|| "absent".into())
}

/// Waits until node `i` answers health with `status`.
async fn health_is(cluster: &TestCluster, i: usize, status: &str) -> pb::HealthResponse {
    eventually(
        Duration::from_secs(15),
        &format!("node {i} to report {status}"),
        || async move { cluster.health(i).await.filter(|h| h.status == status) },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_grow_shrink_and_rebalance_the_cluster_with_the_cli() {
    let mut spec = ClusterSpec::new(&["us-east", "eu-west", "ap-south"], "");
    spec.spare_regions = vec!["sa-east".into()];
    spec.rtt_ms = Some(wan_rtt);
    let mut cluster = TestCluster::launch(BIN, spec).await;
    let leader = cluster.wait_leader(Duration::from_secs(30)).await;
    let lc = cluster.client(leader).await;
    put(&lc, "acme/db/password", b"fake-before-join").await.unwrap();

    // The spare in sa-east starts empty and says so.
    cluster.restart(3);
    let spare = cluster.node(3).clone();
    health_is(&cluster, 3, "not_joined").await;

    // add-learner: prints before/after tolerance; sa-east gets a learner and no voter.
    let out = ok(&cluster, 1, &["cluster", "add-learner", "--node-api", &spare.api]);
    assert!(
        out.contains("before: 3 voters (ap-south=1 eu-west=1 us-east=1), quorum 2"),
        "{out}"
    );
    assert!(out.contains("after:  3 voters"), "{out}");
    assert!(out.contains("added sa-east-1 in sa-east as a learner"), "{out}");
    // It catches up (the write before it joined and one after) and serves local reads.
    put(&lc, "acme/db/password", b"fake-after-join").await.unwrap();
    let sc = cluster.client(3).await;
    let r = eventually(Duration::from_secs(20), "the learner to catch up", || {
        let sc = sc.clone();
        async move {
            get(&sc, "acme/db/password", None)
                .await
                .ok()
                .filter(|r| r.value == b"fake-after-join")
        }
    })
    .await;
    let served = r.read.unwrap().served_by.unwrap();
    assert_eq!((served.node.as_str(), served.role.as_str()), ("sa-east-1", "learner"));
    let old = get(&sc, "acme/db/password", Some(1)).await.unwrap();
    assert_eq!(old.value, b"fake-before-join");
    let st = status_json(&cluster, 3);
    assert_eq!(role_of(&st, "sa-east-1"), "learner");
    assert_eq!(st["tolerance"]["learners_per_region"]["sa-east"], 1);
    assert_eq!(st["tolerance"]["regions"], 1);

    // The safety check: demoting a voter of three leaves two voters in two regions, which cannot
    // survive the loss of either region. Refused, one line, non-zero, nothing changed.
    let (code, out, err) = cluster.cli(0, &["cluster", "demote", "us-east-1"]);
    assert_ne!(code, 0, "{out}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("refused") && err.contains("--force"), "{err}");
    assert!(err.contains("after: 2 voters (ap-south=1 eu-west=1)"), "{err}");
    let still = role_of(&status_json(&cluster, 0), "us-east-1");
    assert!(still == "voter" || still == "leader", "{still}");

    // promote: four voters in four regions.
    let out = ok(&cluster, 2, &["cluster", "promote", "sa-east-1"]);
    assert!(
        out.contains("after:  4 voters (ap-south=1 eu-west=1 sa-east=1 us-east=1), quorum 3: survives the loss of 1 node and 1 region"),
        "{out}"
    );
    let st = status_json(&cluster, 0);
    assert_eq!(role_of(&st, "sa-east-1"), "voter");
    assert_eq!(st["tolerance"]["voters"], 4);

    // demote it again (three voters in three regions stay safe), then remove it.
    let out = ok(&cluster, 0, &["cluster", "demote", "4"]);
    assert!(out.contains("demoted sa-east-1 (id 4) to learner"), "{out}");
    assert_eq!(role_of(&status_json(&cluster, 1), "sa-east-1"), "learner");
    let out = ok(&cluster, 0, &["cluster", "remove", "sa-east-1"]);
    assert!(out.contains("removed learner sa-east-1 (id 4)"), "{out}");
    assert_eq!(role_of(&status_json(&cluster, 0), "sa-east-1"), "absent");
    // The removed node says so and stops serving reads as if it were current.
    let h = health_is(&cluster, 3, "removed").await;
    assert_eq!(h.local.unwrap().state, "removed");
    let e = get(&sc, "acme/db/password", None).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("removed"), "{}", e.message());
    // It stays removed across a restart.
    cluster.stop(3);
    cluster.restart(3);
    health_is(&cluster, 3, "removed").await;
    cluster.stop(3);

    // transfer-leader: leadership moves to the named voter.
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let target = (leader + 1) % 3;
    let name = cluster.node(target).name.clone();
    let out = ok(&cluster, target, &["cluster", "transfer-leader", &name]);
    assert!(
        out.contains(&format!("asked {name} (id {}) to take over leadership", target + 1)),
        "{out}"
    );
    eventually(Duration::from_secs(15), "leadership to move", || {
        let cluster = &cluster;
        async move {
            let s = cluster.status(leader).await?;
            (s.leader_id == target as u64 + 1).then_some(())
        }
    })
    .await;
    assert_eq!(cluster.wait_leader(Duration::from_secs(10)).await, target);
    // And writes go on under the new leader.
    let w = put(&cluster.client(leader).await, "acme/db/password", b"fake-new-leader")
        .await
        .unwrap();
    assert_eq!(w.version, 3);
}

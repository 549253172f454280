//! A drill's faults on a real cluster (docs/architecture.md: Drills): a fence cuts a node off
//! both ways and makes it refuse clients, the others elect a leader, and the fence ends by
//! itself at its deadline with nobody lifting it; a KMS outage fails one region's KMS calls;
//! only `drill:run` raises faults, and each call is audited at critical severity.

mod common;

use std::time::Duration;

use coffer::error::code_of;
use coffer::pb;
use common::*;

fn order(drill: &str, kind: pb::DrillFaultKind, region: &str, ms: u64) -> pb::DrillFaultRequest {
    pb::DrillFaultRequest {
        drill_id: drill.into(),
        kind: kind as i32,
        region: region.into(),
        duration_ms: ms,
        action: pb::DrillFaultAction::Raise as i32,
        peers: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_leader_is_replaced_refuses_clients_and_heals_itself_at_its_deadline() {
    let cluster = TestCluster::start(BIN, &["us-east", "eu-west", "ap-south"], FAST_RAFT).await;
    let leader = cluster.wait_leader(Duration::from_secs(30)).await;
    let root = cluster.client(leader).await;
    wait_token_key(&root).await;
    put(&root, "app/before", b"fake-before").await.unwrap();

    // Without drill:run, no fault.
    put_policy(
        &root,
        r#"{"name":"ops","statements":[{"effect":"allow","principals":["user:ops"],
            "actions":["cluster:admin"],"resources":["*"]}]}"#,
    )
    .await;
    let ops = create_token(&root, "user:ops", &[], &["ops"], Duration::from_secs(600)).await;
    let ops = cluster.client_with(leader, Some(&ops.token)).await;
    let fence = order("t-fence", pb::DrillFaultKind::Fence, "", 6_000);
    let e = ops.cluster.clone().drill_fault(fence.clone()).await.unwrap_err();
    assert_eq!(code_of(&e), Some("permission_denied"), "{e}");

    // Fence the leader, with nobody to lift it.
    let r = root.cluster.clone().drill_fault(fence).await.unwrap().into_inner();
    let fenced_at = std::time::Instant::now();
    assert_eq!(r.standing.len(), 1, "{r:?}");
    assert_eq!(r.standing[0].kind, pb::DrillFaultKind::Fence as i32);
    assert!(
        r.standing[0].remaining_ms <= 6_000 && r.standing[0].remaining_ms > 4_000,
        "{r:?}"
    );

    // It refuses clients, reads and writes, with the drill named; health says why.
    let e = get(&root, "app/before", None).await.unwrap_err();
    assert_eq!(code_of(&e), Some("drill_in_progress"), "{e}");
    assert!(e.message().contains("drill t-fence in progress"), "{}", e.message());
    let e = put(&root, "app/during", b"fake-x").await.unwrap_err();
    assert_eq!(code_of(&e), Some("drill_in_progress"), "{e}");
    let ready = http_request(&cluster.node(leader).http, "GET", "/health/ready", None, None)
        .await
        .unwrap();
    assert_eq!(
        (ready.status, ready.json["status"].as_str()),
        (503, Some("fenced")),
        "{}",
        ready.text
    );
    // The drill's own calls still answer there.
    let mut report = order("t-fence", pb::DrillFaultKind::Unspecified, "", 0);
    report.action = pb::DrillFaultAction::Report as i32;
    let r = root
        .cluster
        .clone()
        .drill_fault(report.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.standing.len(), 1);

    // The others see it gone: they elect a leader among themselves and take writes.
    let other = (leader + 1) % 3;
    let oc = cluster.client(other).await;
    eventually(Duration::from_secs(15), "a write through the other two", || async {
        put(&oc, "app/during", b"fake-during").await.ok()
    })
    .await;
    let s = cluster
        .status(other)
        .await
        .expect("status from a node that is not fenced");
    assert_ne!(
        s.leader_id,
        cluster.node(leader).id,
        "the fenced leader was replaced: {s:?}"
    );
    assert!(
        fenced_at.elapsed() < Duration::from_secs(6),
        "the write came while the fence stood"
    );

    // Nobody lifts it: at its deadline the node heals and catches up by itself.
    let r = eventually(Duration::from_secs(30), "the fenced node serves again", || async {
        get_with(
            &root,
            "app/during",
            None,
            Some(pb::read_consistency::Mode::Linearizable(pb::LinearizableRead {})),
        )
        .await
        .ok()
    })
    .await;
    assert!(
        fenced_at.elapsed() >= Duration::from_millis(5_900),
        "not before its deadline"
    );
    assert_eq!(r.value, b"fake-during");
    let r = root.cluster.clone().drill_fault(report).await.unwrap().into_inner();
    assert!(r.standing.is_empty(), "{r:?}");

    // Every drill call is in the audit log at critical severity, the refused one included.
    let tail = root
        .access
        .clone()
        .audit_tail(pb::AuditTailRequest { count: 200 })
        .await
        .unwrap()
        .into_inner();
    let drills: Vec<_> = tail
        .entries
        .iter()
        .filter_map(|e| e.event.as_ref())
        .filter(|e| e.action == "drill:run")
        .collect();
    assert_eq!(drills.len(), 4, "{drills:?}");
    assert!(drills.iter().all(|e| e.severity == "critical"), "{drills:?}");
    assert_eq!(drills.iter().filter(|e| e.decision == "deny").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kms_outage_fails_that_regions_calls_and_ends_when_lifted() {
    let cluster = TestCluster::start(BIN, &["us-east", "eu-west", "ap-south"], FAST_RAFT).await;
    let leader = cluster.wait_leader(Duration::from_secs(30)).await;
    let root = cluster.client(leader).await;
    wait_token_key(&root).await;

    let bad = order("t-kms", pb::DrillFaultKind::KmsOutage, "mars", 60_000);
    let e = root.cluster.clone().drill_fault(bad).await.unwrap_err();
    assert_eq!(code_of(&e), Some("invalid_argument"), "{e}");
    let e = root
        .cluster
        .clone()
        .drill_fault(order("t-kms", pb::DrillFaultKind::Fence, "", 999))
        .await
        .unwrap_err();
    assert_eq!(
        code_of(&e),
        Some("invalid_argument"),
        "a fault without a deadline is refused: {e}"
    );
    let e = root
        .cluster
        .clone()
        .drill_fault(order("t-kms", pb::DrillFaultKind::LoseNextWrite, "", 5_000))
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), Some("failed_precondition"), "test hooks are off: {e}");

    // Every node loses eu-west's KMS: writes leave its wrap missing, and the KMS status says why.
    for i in 0..3 {
        let c = cluster.client(i).await;
        let r = c
            .cluster
            .clone()
            .drill_fault(order("t-kms", pb::DrillFaultKind::KmsOutage, "eu-west", 60_000))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.standing[0].region, "eu-west");
    }
    put(&root, "app/while-down", b"fake-value").await.unwrap();
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let lc = cluster.client(leader).await;
    let status = lc
        .kms
        .clone()
        .status(pb::KmsStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let eu = status.regions.iter().find(|r| r.region == "eu-west").unwrap();
    assert!(!eu.healthy, "{eu:?}");
    assert!(eu.last_error.contains("drill t-kms"), "{}", eu.last_error);
    assert!(eu.versions_missing_wrap >= 1, "{eu:?}");
    let us = status.regions.iter().find(|r| r.region == "us-east").unwrap();
    assert!(us.healthy, "{us:?}");

    // Lifted everywhere: the region answers again (once its rest after the failure is over,
    // the next write reaches it).
    for i in 0..3 {
        let c = cluster.client(i).await;
        let mut lift = order("t-kms", pb::DrillFaultKind::Unspecified, "", 0);
        lift.action = pb::DrillFaultAction::Lift as i32;
        let r = c.cluster.clone().drill_fault(lift).await.unwrap().into_inner();
        assert_eq!((r.lifted, r.standing.len()), (1, 0), "{r:?}");
    }
    eventually(Duration::from_secs(30), "eu-west healthy again", || async {
        put(&lc, "app/after", b"fake-after").await.ok()?;
        let s = lc.kms.clone().status(pb::KmsStatusRequest {}).await.ok()?.into_inner();
        s.regions
            .into_iter()
            .find(|r| r.region == "eu-west" && r.healthy)
            .map(|_| ())
    })
    .await;
}

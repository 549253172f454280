//! Out of disk: every node's data folder is a small tmpfs of its own (mounting needs root, as
//! `make test` runs). A leader that runs out of space says so by name and hands leadership
//! on, so writes go on through the others; the full node keeps serving what it holds; with
//! every node full, a write fails at once with `out_of_disk`, not a timeout; and once space is
//! back every node takes writes again and catches up, with no restart.

mod common;

use std::time::Duration;
use std::time::Instant;

use coffer::pb;
use common::*;

/// Each node's tmpfs, and the free space below which it is out of disk.
const TMPFS_MIB: u64 = 256;
const MIN_FREE: u64 = 48 << 20;
/// What a filler leaves free: under the threshold, with room for RocksDB's own writes.
const LEAVE: u64 = 24 << 20;

fn local() -> Option<pb::read_consistency::Mode> {
    Some(pb::read_consistency::Mode::Local(pb::LocalRead {}))
}

fn linearizable() -> Option<pb::read_consistency::Mode> {
    Some(pb::read_consistency::Mode::Linearizable(pb::LinearizableRead {}))
}

/// The node's own report of being out of disk (empty: it is not).
async fn out_of_disk(cluster: &TestCluster, i: usize) -> String {
    cluster
        .health(i)
        .await
        .and_then(|h| h.local)
        .map(|l| l.out_of_disk)
        .unwrap_or_default()
}

async fn wait_out_of_disk(cluster: &TestCluster, i: usize) {
    let name = cluster.node(i).name.clone();
    eventually(
        Duration::from_secs(10),
        "the node to report it is out of disk",
        || async {
            let why = out_of_disk(cluster, i).await;
            why.starts_with(&format!("out of disk on {name}")).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_disk_is_named_reads_go_on_and_writes_resume_when_space_is_back() {
    let raft = format!("{FAST_RAFT}min_free_disk_bytes = {MIN_FREE}\n");
    let mut spec = ClusterSpec::new(&["us-east", "eu-west", "ap-south"], &raft);
    spec.data_tmpfs_mib = Some(TMPFS_MIB);
    let cluster = TestCluster::launch(BIN, spec).await;
    let full = cluster.wait_leader(Duration::from_secs(20)).await;
    let c = cluster.client(full).await;
    wait_token_key(&c).await;
    put(&c, "acme/disk/a", b"fake-before").await.unwrap();
    assert_eq!(out_of_disk(&cluster, full).await, "");

    // The leader runs out of space: it says so, and another node takes the writes.
    let filler = Filler::fill(&cluster.data_dir(full), LEAVE).unwrap();
    wait_out_of_disk(&cluster, full).await;
    let during = eventually(Duration::from_secs(15), "a write through the full node", || {
        let c = c.clone();
        async move { put(&c, "acme/disk/b", b"fake-during").await.ok() }
    })
    .await;
    assert!(during.version >= 1);
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    assert_ne!(leader, full, "a full node does not keep the leadership");
    // The full node serves what it holds, and says why it cannot serve more.
    assert_eq!(
        get_with(&c, "acme/disk/a", None, local()).await.unwrap().value,
        b"fake-before"
    );
    let e = get_with(&c, "acme/disk/b", None, linearizable()).await.unwrap_err();
    assert!(e.message().contains("out of disk on"), "{e:?}");

    // Every node full: a write fails fast, by name, and nothing is written.
    let others: Vec<usize> = (0..3).filter(|i| *i != full).collect();
    let more: Vec<Filler> = others
        .iter()
        .map(|i| Filler::fill(&cluster.data_dir(*i), LEAVE).unwrap())
        .collect();
    for i in &others {
        wait_out_of_disk(&cluster, *i).await;
    }
    let l = cluster.client(others[0]).await;
    let started = Instant::now();
    let e = put(&l, "acme/disk/c", b"fake-refused").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert_eq!(coffer::error::code_of(&e), Some("out_of_disk"), "{e:?}");
    assert!(e.message().contains("out of disk on"), "{}", e.message());
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "answered in {:?}, well inside the write timeout",
        started.elapsed()
    );
    // Reads go on.
    assert_eq!(
        get_with(&l, "acme/disk/b", None, local()).await.unwrap().value,
        b"fake-during"
    );

    // Space is back: writes resume and every node catches up, without a restart.
    drop(filler);
    drop(more);
    let after = eventually(Duration::from_secs(20), "a write once space is back", || {
        let l = l.clone();
        async move { put(&l, "acme/disk/d", b"fake-after").await.ok() }
    })
    .await;
    for i in 0..3 {
        let n = cluster.client(i).await;
        let r = eventually(Duration::from_secs(20), "every node to catch up", || {
            let n = n.clone();
            async move { get_with(&n, "acme/disk/d", None, linearizable()).await.ok() }
        })
        .await;
        assert_eq!(r.value, b"fake-after");
        assert_eq!(r.version, after.version);
        assert_eq!(
            get_with(&n, "acme/disk/c", None, local()).await.unwrap_err().code(),
            tonic::Code::NotFound,
            "the refused write never landed"
        );
        assert_eq!(out_of_disk(&cluster, i).await, "");
    }
}

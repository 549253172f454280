//! Destroyed means gone: within a bound after a destroy, no file under any node's data folder
//! (RocksDB's SST, WAL and MANIFEST files, the Raft log, the snapshot) holds the destroyed
//! version's ciphertext or any of its wrapped data keys, while the live version's bytes are
//! still there. The same holds for a version `max_versions` pruned. The same scan finds the
//! doomed bytes on every node before, so the test can fail.

mod common;

use std::path::Path;
use std::time::Duration;

use coffer::pb;
use common::*;
use prost::Message;

const NAME: &str = "acme/shred/db";
/// A secret that keeps one version (and what an alias points at).
const CAPPED: &str = "acme/shred/capped";

/// The bytes of a version that must not outlive its destroy: ciphertext and wrapped keys.
fn needles(e: &pb::Envelope) -> Vec<Vec<u8>> {
    let mut n = vec![e.ciphertext.clone()];
    n.extend(e.wrapped_keys.iter().map(|w| w.blob.clone()));
    assert!(
        n.iter().all(|b| b.len() >= 32),
        "needles long enough not to match by chance"
    );
    n
}

/// The files under `dir` holding one of `needles` (files that vanish while read are skipped).
fn holding(dir: &Path, needles: &[Vec<u8>]) -> Vec<String> {
    let mut out = vec![];
    for f in files_under(dir) {
        let Ok(bytes) = std::fs::read(&f) else { continue };
        if needles
            .iter()
            .any(|n| bytes.windows(n.len()).any(|w| w == n.as_slice()))
        {
            out.push(f.display().to_string());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destroyed_version_is_gone_from_every_file_of_every_node() {
    let mut cluster = TestCluster::start(BIN, &["us-east", "eu-west", "ap-south"], FAST_RAFT).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let c = cluster.client(leader).await;
    wait_token_key(&c).await;
    put(&c, NAME, b"fake-doomed-value-1").await.unwrap();
    let kept = put(&c, NAME, b"fake-kept-value-2").await.unwrap();
    assert_eq!(kept.version, 2);
    c.secrets
        .clone()
        .create_secret(pb::CreateSecretRequest {
            name: CAPPED.into(),
            spec: Some(pb::SecretSpec {
                max_versions: 1,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    put(&c, CAPPED, b"fake-capped-value-1").await.unwrap();
    put(&c, CAPPED, b"fake-capped-value-2").await.unwrap();
    // Version 1 is PREVIOUS now, so the cap of one keeps it for the moment.

    // The doomed and live versions' bytes, as a follower stored them (read with the node stopped).
    let f = (leader + 1) % 3;
    let fc = cluster.client(f).await;
    eventually(Duration::from_secs(10), "the follower to apply the last put", || {
        let c = fc.clone();
        async move { get(&c, CAPPED, Some(2)).await.ok() }
    })
    .await;
    cluster.stop(f);
    let (doomed, live) = {
        let (_log, sm) = coffer_raft::rocks::open_for_node(&cluster.data_dir(f), 1).unwrap();
        let view = coffer_raft::storage::SmBackend::view(&sm);
        let read = |name: &str, v: u64| {
            let bytes = view
                .get(&coffer_model::keys::version(name, v))
                .unwrap()
                .expect("the version is stored");
            pb::SecretVersion::decode(bytes.as_slice()).unwrap().envelope.unwrap()
        };
        let mut doomed = needles(&read(NAME, 1));
        doomed.extend(needles(&read(CAPPED, 1)));
        (doomed, needles(&read(NAME, 2)))
    };
    cluster.restart(f);

    // Before the destroy every node holds version 1's bytes somewhere (the log, at least).
    for i in 0..3 {
        assert!(
            !holding(&cluster.data_dir(i), &doomed).is_empty(),
            "node {i} before the destroy"
        );
    }

    let destroyed = c
        .secrets
        .clone()
        .destroy_version(pb::DestroyVersionRequest {
            name: NAME.into(),
            version: 1,
        })
        .await
        .unwrap()
        .into_inner();

    // The third version moves PREVIOUS off version 1, which the cap then prunes.
    let third = put(&c, CAPPED, b"fake-capped-value-3").await.unwrap();
    assert_eq!(third.version, 3);
    let through = destroyed.log_index.max(third.log_index);

    // Within the bound every node reports its storage shredded through both.
    for i in 0..3 {
        eventually(Duration::from_secs(60), "the node to shred its storage", || async {
            let local = cluster.health(i).await?.local?;
            (local.shredded_through >= through).then_some(())
        })
        .await;
    }
    // Killed, not stopped: the files are exactly as the running nodes left them.
    for i in 0..3 {
        cluster.kill(i);
    }
    for i in 0..3 {
        let dir = cluster.data_dir(i);
        let left = holding(&dir, &doomed);
        assert!(left.is_empty(), "node {i} still holds destroyed bytes in {left:?}");
        assert!(
            !holding(&dir, &live).is_empty(),
            "node {i} lost the live version's bytes"
        );
    }

    // The cluster comes back whole: the live version reads, the destroyed one says so.
    for i in 0..3 {
        cluster.restart(i);
    }
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    for i in [leader, (leader + 1) % 3] {
        let c = cluster.client(i).await;
        let r = eventually(Duration::from_secs(10), "a read after the restart", || {
            let c = c.clone();
            async move { get(&c, NAME, Some(2)).await.ok() }
        })
        .await;
        assert_eq!(r.value, b"fake-kept-value-2");
        let e = get(&c, NAME, Some(1)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains("destroyed"), "{}", e.message());
        let e = get(&c, CAPPED, Some(1)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
        assert_eq!(get(&c, CAPPED, Some(2)).await.unwrap().value, b"fake-capped-value-2");
    }
}

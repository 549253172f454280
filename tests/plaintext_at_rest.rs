//! The Raft log and RocksDB (SST, WAL, MANIFEST; the state there is also the snapshot, which
//! exists on disk nowhere else) hold only ciphertext: after writing
//! known values, no file under any node's data folder contains their bytes, nor a checksum of
//! them (an offline guessing oracle), and every file there is the node user's alone. Node logs
//! don't hold the values either.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::*;

/// How a crc32c of a value would be stored: as `SecretVersion.crc32c` (field 5) or
/// `AddVersion.crc32c` (field 4), a varint after its tag.
fn crc_needles(value: &[u8]) -> Vec<Vec<u8>> {
    let crc = crc32c::crc32c(value);
    [0x28u8, 0x20]
        .iter()
        .map(|tag| {
            let mut n = vec![*tag];
            prost::encoding::encode_varint(u64::from(crc), &mut n);
            n
        })
        .collect()
}

const RAFT: &str = "heartbeat_ms = 50\nelection_timeout_min_ms = 400\nelection_timeout_max_ms = 800\n\
                    snapshot_every_entries = 5\nkeep_logs_after_snapshot = 2\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_in_any_file_of_any_node() {
    let mut cluster = TestCluster::start(BIN, &["us-east", "eu-west", "ap-south"], RAFT).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let c = cluster.client((leader + 1) % 3).await;

    let canary = format!(
        "PLAINTEXT-CANARY-{}",
        hex::encode(coffer::crypto::random_bytes::<8>().unwrap())
    );
    let mut canaries = vec![canary.clone()];
    put(&c, "acme/canary", canary.as_bytes()).await.unwrap();
    // Enough further writes to build snapshots and purge the log behind them.
    for i in 0..12 {
        let v = format!("{canary}-{i}");
        put(&c, &format!("acme/canary-{}", i % 3), v.as_bytes()).await.unwrap();
        canaries.push(v);
    }
    // Every node has it (so every node's storage saw it) ...
    for i in 0..3 {
        let ci = cluster.client(i).await;
        let r = eventually(Duration::from_secs(10), "replication", || {
            let ci = ci.clone();
            async move { get(&ci, "acme/canary", None).await.ok() }
        })
        .await;
        assert_eq!(r.value, canary.as_bytes(), "the value round-trips");
    }

    // ... stop gracefully so memtables are flushed to SST files as well as the WAL.
    cluster.stop_all();

    let mut scanned = 0;
    for i in 0..3 {
        for f in files_under(&cluster.data_dir(i)) {
            let bytes = std::fs::read(&f).unwrap();
            scanned += 1;
            for needle in [canary.as_bytes(), b"PLAINTEXT-CANARY".as_slice()] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "plaintext found in {}",
                    f.display()
                );
            }
            for needle in canaries.iter().flat_map(|c| crc_needles(c.as_bytes())) {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "a checksum of a value found in {}",
                    f.display()
                );
            }
            let mode = std::fs::metadata(&f).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", f.display());
        }
        let log = cluster.log(i);
        assert!(!log.contains("PLAINTEXT-CANARY"), "plaintext in node {i}'s log");
    }
    for i in 0..3 {
        let mode = std::fs::metadata(cluster.data_dir(i)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "node {i}'s data dir is mode {mode:o}");
    }
    assert!(scanned > 10, "scanned the RocksDB files ({scanned})");
    // The check can fail: the same scan finds the canary in a file that does hold it.
    let control = cluster.dir.path().join("control");
    std::fs::write(&control, format!("xx{canary}yy")).unwrap();
    let bytes = std::fs::read(&control).unwrap();
    assert!(bytes.windows(canary.len()).any(|w| w == canary.as_bytes()));
    // So does the checksum scan in a record that carries one.
    let legacy = coffer::pb::SecretVersion {
        name: "acme/canary".into(),
        version: 1,
        crc32c: crc32c::crc32c(canary.as_bytes()),
        ..Default::default()
    };
    let bytes = prost::Message::encode_to_vec(&legacy);
    let needle = &crc_needles(canary.as_bytes())[0];
    assert!(bytes.windows(needle.len()).any(|w| w == needle.as_slice()));
}

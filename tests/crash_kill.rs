//! Crashes with real processes: a 3-node cluster on RocksDB takes a steady write load from
//! several clients while a random node is killed with SIGKILL (no flush, no goodbye) every few
//! seconds for a minute, and restarted. Then every acknowledged write is read back
//! linearizably from every node and compared byte for byte: none lost, none different.
//!
//! The kills are drawn from a seed printed at the start; `COFFER_CRASH_SEED=<n>` replays the
//! same schedule of victims (the timing of a real run is never exactly the same).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use coffer::pb;
use common::*;
use futures::StreamExt;

/// How long nodes are killed for.
const CHAOS: Duration = Duration::from_secs(60);
/// Concurrent writers; each writes its own keys, one at a time, to a node of its choice.
const WRITERS: usize = 6;

/// xorshift64*: a small, seedable generator (the victims and the writers' node choices).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn linearizable() -> Option<pb::read_consistency::Mode> {
    Some(pb::read_consistency::Mode::Linearizable(pb::LinearizableRead {}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkills_of_random_nodes() {
    let seed = std::env::var("COFFER_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::from_le_bytes(coffer::crypto::random_bytes::<8>().unwrap()) | 1);
    eprintln!("crash test seed {seed} (COFFER_CRASH_SEED={seed} replays the victims)");
    let mut cluster = TestCluster::start(BIN, &["us-east", "eu-west", "ap-south"], FAST_RAFT).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    wait_token_key(&cluster.client(leader).await).await;
    let mut clients = vec![];
    for i in 0..3 {
        clients.push(cluster.client(i).await);
    }

    // Writers: each put that returns Ok is acknowledged, with the value it wrote.
    let acked: Arc<Mutex<BTreeMap<String, Vec<u8>>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = vec![];
    for w in 0..WRITERS {
        let (clients, acked, stop) = (clients.clone(), acked.clone(), stop.clone());
        let mut rng = Rng(seed ^ (w as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        writers.push(tokio::spawn(async move {
            let mut attempts = 0u64;
            while !stop.load(Ordering::Relaxed) {
                attempts += 1;
                let name = format!("acme/crash/w{w}-{attempts:06}");
                let value = format!("fake-{seed}-{w}-{attempts}-{}", rng.next()).into_bytes();
                let c = &clients[rng.below(3) as usize];
                let put = tokio::time::timeout(Duration::from_secs(5), put(c, &name, &value)).await;
                match put {
                    Ok(Ok(r)) => {
                        assert_eq!(r.version, 1, "{name}: a fresh name gets version 1");
                        acked.lock().unwrap().insert(name, value);
                    }
                    // Refused, failed or timed out: not acknowledged, may or may not have
                    // applied. The node may be down: try another soon.
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            attempts
        }));
    }

    // The chaos: kill a random node, give the others a moment, bring it back, repeat.
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut kills = 0;
    while started.elapsed() < CHAOS {
        let victim = rng.below(3) as usize;
        cluster.kill(victim);
        kills += 1;
        tokio::time::sleep(Duration::from_millis(1500 + rng.below(1500))).await;
        cluster.restart(victim);
        tokio::time::sleep(Duration::from_millis(1000 + rng.below(1000))).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut attempts = 0;
    for w in writers {
        attempts += w.await.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    eprintln!("{kills} kills; {} of {attempts} writes acknowledged", acked.len());
    assert!(kills >= 10, "{kills} kills");
    assert!(
        acked.len() >= 100,
        "too few writes acknowledged to mean much: {}",
        acked.len()
    );

    // Every acknowledged write, from every node, linearizably: present and byte for byte.
    cluster.wait_leader(Duration::from_secs(20)).await;
    let mut clients = vec![];
    for i in 0..3 {
        clients.push(cluster.client(i).await);
    }
    let mut lost = vec![];
    let mut different = vec![];
    for (i, c) in clients.iter().enumerate() {
        // The first read waits for the node to catch up; every later one is answered at once.
        let (first, _) = acked.iter().next().unwrap();
        eventually(Duration::from_secs(30), "a linearizable read on every node", || {
            let c = c.clone();
            async move { get_with(&c, first, None, linearizable()).await.ok() }
        })
        .await;
        let checks = acked.iter().map(|(name, value)| {
            let c = c.clone();
            async move { (name, value, get_with(&c, name, None, linearizable()).await) }
        });
        let results = futures::stream::iter(checks)
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
        for (name, value, got) in results {
            match got {
                Ok(r) if r.value == *value => {}
                Ok(r) => different.push(format!("node {i} {name}: {:?}", String::from_utf8_lossy(&r.value))),
                Err(e) => lost.push(format!("node {i} {name}: {:?} {}", e.code(), e.message())),
            }
        }
    }
    assert!(
        lost.is_empty(),
        "seed {seed}: {} acknowledged writes not read back: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert!(
        different.is_empty(),
        "seed {seed}: {} reads differ: {:?}",
        different.len(),
        &different[..different.len().min(10)]
    );
    for i in 0..3 {
        assert!(!cluster.log(i).contains("panicked"), "node {i} panicked");
    }
}

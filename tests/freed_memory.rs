//! Plaintext does not outlive its requests in a node's memory: once values have been written
//! and read and the client has gone, no copy of them is left anywhere in the node process's
//! readable memory. Freed buffers (tonic's, hyper's, HTTP/2 frames) are zeroed by the server's
//! allocator (`coffer::zeroing_alloc`); the types holding values zeroize themselves.
//!
//! Reads the node's memory through `/proc/<pid>/mem` (the tests run as root, like CI).

mod common;

use std::io;
use std::os::unix::fs::FileExt;
use std::time::Duration;
use std::time::Instant;

use common::*;

/// Readable bytes scanned and the addresses where `needles` were found, per needle.
struct Scan {
    bytes: u64,
    hits: Vec<Vec<u64>>,
}

/// Searches every readable mapping of process `pid` for each of `needles`.
fn scan_process(pid: u32, needles: &[&[u8]]) -> io::Result<Scan> {
    const CHUNK: usize = 1 << 20;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let mem = std::fs::File::open(format!("/proc/{pid}/mem"))?;
    let longest = needles.iter().map(|n| n.len()).max().unwrap_or(1);
    let mut scan = Scan {
        bytes: 0,
        hits: vec![vec![]; needles.len()],
    };
    let mut buf = vec![0u8; CHUNK + longest];
    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(range), Some(perms)) = (fields.first(), fields.get(1)) else {
            continue;
        };
        // Readable, and not the kernel's own pages ([vvar], [vsyscall]).
        if !perms.starts_with('r')
            || fields
                .get(5)
                .is_some_and(|p| p.starts_with("[vvar") || p.starts_with("[vsys"))
        {
            continue;
        }
        let Some((lo, hi)) = range.split_once('-') else {
            continue;
        };
        let (lo, hi) = (
            u64::from_str_radix(lo, 16).unwrap(),
            u64::from_str_radix(hi, 16).unwrap(),
        );
        let mut at = lo;
        while at < hi {
            let len = ((hi - at) as usize).min(CHUNK + longest);
            // A page that cannot be read (guard pages) ends this mapping's scan.
            if mem.read_exact_at(&mut buf[..len], at).is_err() {
                break;
            }
            scan.bytes += len.min(CHUNK) as u64;
            for (i, needle) in needles.iter().enumerate() {
                let found = buf[..len]
                    .windows(needle.len())
                    .enumerate()
                    .filter(|(off, w)| *off < CHUNK && w == needle)
                    .map(|(off, _)| at + off as u64);
                scan.hits[i].extend(found);
            }
            at += CHUNK as u64;
        }
    }
    Ok(scan)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_value_is_left_in_a_nodes_memory_after_its_requests() {
    let cluster = TestCluster::start(BIN, &["us-east"], FAST_RAFT).await;
    let pid = cluster.pid(0).expect("node 0 runs");
    let canary = "fake-freed-memory-canary-7c1d5e0b93a2f4e8".to_string();
    let marker = cluster.data_dir(0).display().to_string();
    {
        let c = cluster.client(0).await;
        wait_token_key(&c).await;
        let name = "acme/memory/canary";
        put(&c, name, canary.as_bytes()).await.unwrap();
        put(&c, name, format!("{canary}-v2").as_bytes()).await.unwrap();
        for _ in 0..20 {
            assert_eq!(get(&c, name, Some(1)).await.unwrap().value, canary.as_bytes());
            get(&c, name, None).await.unwrap();
        }
        // The client leaves: its connection and the node's buffers for it go.
    }
    // The node frees a connection's buffers once it sees the connection close: look again
    // for a few seconds until it has.
    let deadline = Instant::now() + Duration::from_secs(5);
    let scan = loop {
        let scan = scan_process(pid, &[canary.as_bytes(), marker.as_bytes()]).expect("read the node's memory");
        if scan.hits[0].is_empty() || Instant::now() > deadline {
            break scan;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        scan.hits[0].is_empty(),
        "{} copies of the value are still in the node's memory 5 s after its requests ended (first at {:#x})",
        scan.hits[0].len(),
        scan.hits[0][0]
    );
    // The scan works: it read real memory and found what must be there (the node's data dir,
    // in its config).
    assert!(scan.bytes > 16 << 20, "only {} bytes scanned", scan.bytes);
    assert!(
        !scan.hits[1].is_empty(),
        "the scan did not find the node's own data dir"
    );
    drop(cluster);
}

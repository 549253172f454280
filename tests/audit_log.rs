//! The node-local audit log on real nodes: it fails closed when its filesystem is full or
//! read-only (requests fail promptly, nothing hangs, and it recovers), its records name the
//! version a read returned and a put wrote, and `coffer audit verify` catches an edited byte, a
//! deleted record and a swapped pair in a real log.
//!
//! The filesystem tests mount small tmpfs filesystems (the tests run as root, like CI).

mod common;

use std::path::Path;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use std::time::Instant;

use coffer::pb;
use common::*;
use tonic::Code;

/// A tmpfs mounted for the life of the value.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str, read_only: bool) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let opts = if read_only {
            format!("size={size},ro")
        } else {
            format!("size={size}")
        };
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &opts, "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir: dir.to_path_buf() }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Fills the filesystem of `dir` with one file until the disk says no.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    while f.write_all(&[0u8]).is_ok() {}
    let _ = f.sync_all();
    path
}

fn audit_section(path: &Path) -> String {
    format!("[audit]\npath = \"{}\"\nwrite_timeout_ms = 1000\n", path.display())
}

/// A request that must fail closed, promptly, naming the audit log and the cause.
async fn assert_refused_promptly(c: &coffer::client::Client, cause: &str) {
    let start = Instant::now();
    let err = c
        .access
        .clone()
        .list_policies(pb::ListPoliciesRequest {})
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("audit log") && err.message().contains(cause),
        "unexpected message: {}",
        err.message()
    );
    // Bounded by the configured write timeout (1 s) plus scheduling: never a hang.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let err = get(c, "acme/audit/x", None).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_or_read_only_audit_filesystem_fails_requests_closed_and_promptly() {
    let mounts = TempDir::new().unwrap();
    let full = Tmpfs::mount(&mounts.path().join("full"), "256k", false);
    let ro = Tmpfs::mount(&mounts.path().join("ro"), "256k", true);
    let mut spec = ClusterSpec::new(&["us-east", "eu-west", "ap-south"], FAST_RAFT);
    spec.node_extra.insert(1, audit_section(&full.dir.join("audit.log")));
    let mut cluster = TestCluster::launch(BIN, spec).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    wait_token_key(&cluster.client(leader).await).await;
    let n1 = cluster.client(1).await;
    put(&n1, "acme/audit/x", b"fake-audit-value").await.unwrap();

    // Full: once the slack in the audit file's last page is used up (a few records), every
    // request through node 1 fails closed; the others keep serving.
    let filler = fill(&full.dir);
    // Records differ in size (a value read's is larger than a policy listing's), so the slack
    // is used up only when neither kind fits any more.
    let mut accepted = 0;
    loop {
        let read = get(&n1, "acme/audit/x", None).await.is_ok();
        let listed = n1
            .access
            .clone()
            .list_policies(pb::ListPoliciesRequest {})
            .await
            .is_ok();
        if !read && !listed {
            break;
        }
        accepted += 1;
        assert!(accepted < 100, "a full filesystem kept accepting audit records");
    }
    assert_refused_promptly(&n1, "No space left").await;
    let n0 = cluster.client(0).await;
    assert_eq!(get(&n0, "acme/audit/x", None).await.unwrap().value, b"fake-audit-value");

    // Space again: node 1 serves, and its log still verifies (the failed batches left nothing).
    std::fs::remove_file(&filler).unwrap();
    eventually(Duration::from_secs(5), "node 1 to serve again", || {
        let c = n1.clone();
        async move { get(&c, "acme/audit/x", None).await.ok() }
    })
    .await;
    let (code, out, err) = cluster.cli(1, &["audit", "verify", "--output", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true, "{out}");

    // Read-only: node 2 restarted with its audit log on a read-only filesystem. It starts
    // (it keeps replicating) but refuses every request.
    cluster.stop(2);
    let cfg_path = cluster.node_dir(2).join("coffer.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    std::fs::write(
        &cfg_path,
        format!("{cfg}\n{}", audit_section(&ro.dir.join("audit.log"))),
    )
    .unwrap();
    cluster.restart(2);
    let n2 = cluster.client(2).await;
    assert_refused_promptly(&n2, "Read-only file system").await;
    let health = cluster.health(2).await;
    assert!(health.is_none(), "health must fail closed too: {health:?}");
    drop(cluster);
}

/// Runs a few requests on a one-node cluster, stops it, and returns a copy of its audit log
/// (and the directory that holds it).
async fn real_audit_log() -> (TempDir, PathBuf) {
    let mut cluster = TestCluster::start(BIN, &["us-east"], FAST_RAFT).await;
    let c = cluster.client(0).await;
    wait_token_key(&c).await;
    for i in 0..5 {
        put(&c, &format!("acme/audit/s{i}"), b"fake-audited").await.unwrap();
        get(&c, &format!("acme/audit/s{i}"), None).await.unwrap();
    }
    let stranger = cluster.client_with(0, Some("garbage")).await;
    get(&stranger, "acme/audit/s0", None).await.unwrap_err();
    // The live node checks its own log.
    let (code, out, err) = cluster.cli(0, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok:"), "{out}");
    let (code, out, err) = cluster.cli(0, &["audit", "tail", "--count", "3", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let tail: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(tail.as_array().unwrap().len(), 3, "{out}");
    assert!(!out.contains("fake-audited"), "a value reached the audit log: {out}");
    cluster.stop(0);
    let dir = TempDir::new().unwrap();
    let copy = dir.path().join("audit.log");
    std::fs::copy(cluster.data_dir(0).join("audit.log"), &copy).expect("the node's audit log");
    (dir, copy)
}

/// Byte ranges of the length-delimited records of an audit file.
fn frames(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut out = vec![];
    let mut at = 0;
    while at < bytes.len() {
        let mut buf = &bytes[at..];
        let before = buf.len();
        let len = prost::encoding::decode_varint(&mut buf).unwrap() as usize;
        let start = at + (before - buf.len());
        out.push(at..start + len);
        at = start + len;
    }
    out
}

fn verify_file(path: &Path) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["audit", "verify", "--file"])
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The records of one request id in a tail, as JSON objects.
fn records_of<'a>(tail: &'a [serde_json::Value], request_id: &str) -> Vec<&'a serde_json::Value> {
    tail.iter().filter(|r| r["request_id"] == request_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn value_reads_and_puts_record_the_version_they_read_and_wrote() {
    let cluster = TestCluster::start(BIN, &["us-east"], FAST_RAFT).await;
    let c = cluster.client(0).await;
    wait_token_key(&c).await;
    let name = "acme/audit/versioned";
    assert_eq!(put(&c, name, b"fake-one").await.unwrap().version, 1);
    assert_eq!(put(&c, name, b"fake-two").await.unwrap().version, 2);
    let by_alias = |alias: &str| pb::GetSecretValueRequest {
        name: name.into(),
        selector: Some(pb::get_secret_value_request::Selector::Alias(alias.into())),
        consistency: None,
        break_glass: None,
    };
    assert_eq!(get(&c, name, None).await.unwrap().version, 2);
    let previous = c.secrets.clone().get_secret_value(by_alias("PREVIOUS")).await.unwrap();
    assert_eq!(previous.into_inner().version, 1);
    assert_eq!(get(&c, name, Some(1)).await.unwrap().version, 1);
    let missing = get(&c, "acme/audit/never-written", None).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");

    let (code, out, err) = cluster.cli(0, &["audit", "tail", "--count", "40", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains("fake-one") && !out.contains("fake-two"),
        "a value reached the audit log: {out}"
    );
    let tail: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let on = |resource: &str, action: &str| -> Vec<&serde_json::Value> {
        tail.iter()
            .filter(|r| r["resource"] == resource && r["action"] == action)
            .collect()
    };
    // A put: its decision before it ran (no version, no outcome), then what it wrote.
    let puts = on(name, "secrets:write");
    let outcomes: Vec<_> = puts.iter().filter(|r| r["outcome"] == "ok").collect();
    assert_eq!(outcomes.len(), 2, "{puts:#?}");
    for (r, version) in outcomes.iter().zip([1, 2]) {
        assert_eq!(r["version"], version, "{r:#}");
        let pair = records_of(&tail, r["request_id"].as_str().unwrap());
        assert_eq!(pair.len(), 2, "a put has its decision and its outcome: {pair:#?}");
        assert!(
            pair[0]["outcome"].is_null() && pair[0]["version"].is_null(),
            "{:#}",
            pair[0]
        );
        assert!(pair[0]["seq"].as_u64() < pair[1]["seq"].as_u64());
    }
    // A read: one record, naming the version it answered, whether asked by alias or number.
    let reads = on(name, "secrets:read");
    let versions: Vec<_> = reads
        .iter()
        .map(|r| (r["version"].as_u64(), r["outcome"].as_str()))
        .collect();
    assert_eq!(
        versions,
        [(Some(2), Some("ok")), (Some(1), Some("ok")), (Some(1), Some("ok"))],
        "{reads:#?}"
    );
    for r in &reads {
        assert_eq!(records_of(&tail, r["request_id"].as_str().unwrap()).len(), 1, "{r:#}");
    }
    let failed = on("acme/audit/never-written", "secrets:read");
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0]["outcome"], "not_found");
    assert!(failed[0]["version"].is_null());
    // The table shows the version and the outcome too.
    let (code, out, _) = cluster.cli(0, &["audit", "tail", "--count", "40"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("{name}#2")) && out.contains("allow (ok)"),
        "{out}"
    );
    drop(cluster);
}

/// What `coffer audit verify --output json` says on node `via`: exit code and the report.
fn node_verify(cluster: &TestCluster, via: usize) -> (i32, serde_json::Value, String) {
    let (code, out, err) = cluster.cli(via, &["audit", "verify", "--output", "json"]);
    let report = serde_json::from_str(&out).unwrap_or(serde_json::Value::Null);
    (code, report, format!("{out}{err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_cut_at_a_record_boundary_is_caught_by_the_heads_anchored_through_raft() {
    let mut spec = ClusterSpec::new(&["us-east"], FAST_RAFT);
    spec.node_extra.insert(0, "[audit]\nanchor_interval_ms = 200\n".into());
    let mut cluster = TestCluster::launch(BIN, spec).await;
    let c = cluster.client(0).await;
    wait_token_key(&c).await;
    for i in 0..5 {
        put(&c, &format!("acme/audit/anchored-{i}"), b"fake-anchored")
            .await
            .unwrap();
    }
    // The node anchors its head within a few intervals; verify then checks the log against it.
    let anchored = eventually(Duration::from_secs(15), "an anchored head past the puts", || {
        let (code, report, all) = node_verify(&cluster, 0);
        assert_eq!(code, 0, "{all}");
        let through = report["anchored_through"].as_u64().unwrap_or(0);
        async move { (through >= 10 && report["anchors_checked"].as_u64() >= Some(1)).then_some(through) }
    })
    .await;

    // Cut the log at the record boundary before the newest anchored record: the chain that is
    // left verifies on its own, so only the anchors can tell.
    cluster.stop(0);
    let path = cluster.data_dir(0).join("audit.log");
    let bytes = std::fs::read(&path).unwrap();
    let keep = frames(&bytes)[anchored as usize - 2].end;
    std::fs::write(&path, &bytes[..keep]).unwrap();
    let (code, out) = verify_file(&path);
    assert_eq!(code, 0, "a clean cut passes the chain alone: {out}");
    cluster.restart(0);
    // Wait until the restarted node serves again (it takes a write).
    wait_token_key(&cluster.client(0).await).await;
    let (code, report, all) = node_verify(&cluster, 0);
    assert_eq!(code, 2, "a cut log must fail verification: {all}");
    assert!(
        all.contains("anchored through Raft") && all.contains("audit_chain_broken"),
        "the failure names the anchor: {all}"
    );
    assert!(report.is_null() || report["ok"] == false, "{all}");
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_catches_one_edited_byte() {
    let (_dir, log) = real_audit_log().await;
    let (code, out) = verify_file(&log);
    assert_eq!(code, 0, "the untouched copy must verify: {out}");
    let mut bytes = std::fs::read(&log).unwrap();
    let f = frames(&bytes);
    assert!(f.len() >= 10, "expected a real log, got {} records", f.len());
    // One byte in the middle of record 4's body (an event field), changed in the least
    // significant bit: still decodes, but the hash no longer matches.
    let r = &f[3];
    let at = r.start + (r.end - r.start) / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&log, &bytes).unwrap();
    let (code, out) = verify_file(&log);
    assert_ne!(code, 0, "an edited byte must fail verification: {out}");
    assert!(out.contains("record 4"), "must name record 4: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_catches_a_deleted_record() {
    let (_dir, log) = real_audit_log().await;
    let bytes = std::fs::read(&log).unwrap();
    let f = frames(&bytes);
    let mut cut = bytes[..f[5].start].to_vec();
    cut.extend_from_slice(&bytes[f[5].end..]);
    std::fs::write(&log, &cut).unwrap();
    let (code, out) = verify_file(&log);
    assert_ne!(code, 0, "a deleted record must fail verification: {out}");
    assert!(out.contains("record 6"), "must name the record after the gap: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_catches_a_swapped_pair() {
    let (_dir, log) = real_audit_log().await;
    let bytes = std::fs::read(&log).unwrap();
    let f = frames(&bytes);
    let mut swapped = bytes[..f[6].start].to_vec();
    swapped.extend_from_slice(&bytes[f[7].clone()]);
    swapped.extend_from_slice(&bytes[f[6].clone()]);
    swapped.extend_from_slice(&bytes[f[7].end..]);
    assert_eq!(swapped.len(), bytes.len());
    std::fs::write(&log, &swapped).unwrap();
    let (code, out) = verify_file(&log);
    assert_ne!(code, 0, "a swapped pair must fail verification: {out}");
    assert!(
        out.contains("record 7"),
        "must name the first record out of place: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_log_rotates_keeps_its_newest_files_and_verifies_across_them() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new().unwrap();
    let log = dir.path().join("audit.log");
    let mut spec = ClusterSpec::new(&["us-east"], FAST_RAFT);
    spec.node_extra.insert(
        0,
        format!(
            "[audit]\npath = \"{}\"\nmax_file_bytes = 8192\nretain_files = 2\n",
            log.display()
        ),
    );
    let mut cluster = TestCluster::launch(BIN, spec).await;
    let c = cluster.client(0).await;
    wait_token_key(&c).await;
    // About 300 bytes a record: several rotations.
    for _ in 0..150 {
        get(&c, "acme/audit/none", None).await.unwrap_err();
    }
    let rotated = |dir: &Path| {
        let mut r: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("audit.log."))
            .collect();
        r.sort();
        r
    };
    let files = rotated(dir.path());
    assert_eq!(files.len(), 2, "retention keeps the newest two: {files:?}");
    for f in &files {
        let meta = std::fs::metadata(f).unwrap();
        assert!(meta.len() >= 8192, "{} rotated early", f.display());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{}", f.display());
    }
    // The node verifies its own log across the files; the tail spans them.
    let (code, out, err) = cluster.cli(0, &["audit", "verify", "--output", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["ok"].as_bool(), v["files"].as_u64()), (Some(true), Some(3)), "{out}");
    assert!(
        v["first_seq"].as_u64().unwrap() > 1,
        "older records were removed: {out}"
    );
    let (code, out, err) = cluster.cli(0, &["audit", "tail", "--count", "60", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let seqs: Vec<u64> = serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 60);
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");

    // Offline: the set verifies; without its newest rotated file, it does not.
    cluster.stop(0);
    let (code, out) = verify_file(&log);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("in 3 file(s)"), "{out}");
    std::fs::remove_file(&files[1]).unwrap();
    let (code, out) = verify_file(&log);
    assert_eq!(code, 2, "a deleted rotated file must fail verification: {out}");
    assert!(out.contains("audit.log:"), "names the file: {out}");
}

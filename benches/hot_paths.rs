//! The per-request hot paths besides the envelope crypto (the `crypto` bench):
//!
//! - `policy_check`: one policy decision for a service token (allowed read, denied read).
//! - `audit_append`: one audit record made durable, alone (one fdatasync per record) and 64 at
//!   once (group commit: the writer syncs them together).
//! - `apply_batch`: the Raft state machine applying a batch of committed secret writes into
//!   RocksDB (openraft's `RaftStateMachine::apply`, the path every replica runs).
//! - `census_scan`: the rewrap census's scan of every stored version in RocksDB, decoding each
//!   version whole against decoding only its wrapped keys, side by side.
//! - `usage_record`: what per-version read telemetry adds to every value read.
//!
//! Files live under `$CARGO_TARGET_DIR` (else the temp dir), on the build's disk rather than a tmpfs.
//!
//! Run: `cargo bench --workspace --bench hot_paths` (reports under target/criterion). Without
//! `--bench` (`cargo test --workspace --bench hot_paths`), criterion runs each bench once and the
//! assertions check that every bench measures the success path.

use std::cell::Cell;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use coffer::audit::file::AuditFile;
use coffer::audit::file::AuditOptions;
use coffer::authz::policy;
use coffer::authz::Action;
use coffer::pb;
use coffer_kv::Overlay;
use coffer_kv::WriteSet;
use coffer_model::query;
use coffer_raft::codec;
use coffer_raft::openraft::entry::RaftEntry;
use coffer_raft::openraft::storage::RaftStateMachine;
use coffer_raft::openraft::EntryPayload;
use coffer_raft::state_machine::StateMachineStore;
use coffer_raft::storage::SmBackend;
use coffer_raft::Entry;
use criterion::criterion_group;
use criterion::criterion_main;
use criterion::BatchSize;
use criterion::BenchmarkId;
use criterion::Criterion;
use criterion::Throughput;
use tempfile::TempDir;

/// A scratch directory on the disk the build is on: `$CARGO_TARGET_DIR` (or the temp dir,
/// which is the root disk here), so fdatasync and RocksDB cost what they cost in production.
fn scratch_dir() -> TempDir {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base).unwrap();
    tempfile::tempdir_in(&base).unwrap()
}

// ---------------------------------------------------------------------------------------------
// policy_check
// ---------------------------------------------------------------------------------------------

/// Ten installed policies; the caller's token names two of them (`acme-app`, `acme-eu`).
const POLICIES: &[&str] = &[
    r#"{"name":"acme-app","description":"The acme API reads and writes its own secrets.","statements":[
        {"sid":"app-rw","effect":"allow","principals":["service:acme:api"],"actions":["secrets:read","secrets:write"],
         "resources":["acme/app/*"],"conditions":{"regions":["us-east","eu-west"]}},
        {"sid":"no-admin","effect":"deny","principals":["service:acme:*"],"actions":["secrets:*"],"resources":["acme/app/admin/*"]},
        {"sid":"certs","effect":"allow","principals":["service:acme:api"],"actions":["secrets:read"],"resources":["shared/certs/*"]}]}"#,
    r#"{"name":"acme-eu","statements":[
        {"sid":"eu-read","effect":"allow","principals":["service:acme:api"],"actions":["secrets:read"],
         "resources":["acme/eu/*"],"conditions":{"regions":["eu-west"],"max_token_ttl":"7d"}}]}"#,
    r#"{"name":"acme-rotator","statements":[{"effect":"allow","principals":["service:acme:rotator"],"actions":["secrets:rotate"],"resources":["acme/*"]}]}"#,
    r#"{"name":"acme-ops","statements":[{"effect":"allow","principals":["group:acme:ops"],"actions":["secrets:*"],"resources":["acme/*"]}]}"#,
    r#"{"name":"globex-app","statements":[{"effect":"allow","principals":["service:globex:api"],"actions":["secrets:read"],"resources":["globex/*"]}]}"#,
    r#"{"name":"globex-ops","statements":[{"effect":"allow","principals":["group:globex:ops"],"actions":["secrets:*"],"resources":["globex/*"]}]}"#,
    r#"{"name":"shared-certs","statements":[{"effect":"allow","principals":["*"],"actions":["secrets:read"],"resources":["shared/certs/*"]}]}"#,
    r#"{"name":"break-glass","statements":[{"effect":"allow","principals":["user:oncall"],"actions":["secrets:read-break-glass"],
        "resources":["*"],"conditions":{"max_token_ttl":"1h"}}]}"#,
    r#"{"name":"platform","statements":[{"effect":"allow","principals":["user:admin"],"actions":["policy:admin","cluster:admin","audit:read"],"resources":["*"]}]}"#,
    r#"{"name":"auditors","statements":[{"effect":"allow","principals":["group:audit"],"actions":["audit:read"],"resources":["audit"]}]}"#,
];

/// One `policy::decide` for `service:acme:api` reading a secret: allowed, and denied by a deny
/// statement (deny wins); also the allowed read judged against all ten policies.
fn policy_check(c: &mut Criterion) {
    let all: Vec<pb::Policy> = POLICIES.iter().map(|d| policy::parse_document(d).unwrap()).collect();
    assert_eq!(all.len(), 10);
    // What a token naming `acme-app` and `acme-eu` brings to the decision.
    let held: Vec<pb::Policy> = all
        .iter()
        .filter(|p| p.name == "acme-app" || p.name == "acme-eu")
        .cloned()
        .collect();
    assert_eq!(held.len(), 2);
    let caller = policy::Caller {
        principal: "service:acme:api",
        groups: &[],
        token_lifetime_ms: Some(24 * 3600 * 1000),
    };
    let read = |resource| policy::Query {
        action: Action::SecretsRead,
        resource,
        region: "us-east",
        now_ms: 1_700_000_000_000,
    };
    let allowed = read("acme/app/db-password");
    let denied = read("acme/app/admin/root-password");
    let d = policy::decide(&held, &caller, &allowed);
    assert!(d.allowed, "{d}");
    assert_eq!(d.statement_label(), "acme-app#0 (app-rw)");
    let d = policy::decide(&held, &caller, &denied);
    assert!(!d.allowed, "{d}");
    assert_eq!(d.statement_label(), "acme-app#1 (no-admin)", "{d}");
    assert!(policy::decide(&all, &caller, &allowed).allowed);

    let mut g = c.benchmark_group("policy_check");
    g.throughput(Throughput::Elements(1));
    g.bench_function("token_allow", |b| {
        b.iter(|| policy::decide(black_box(&held), &caller, black_box(&allowed)))
    });
    g.bench_function("token_deny", |b| {
        b.iter(|| policy::decide(black_box(&held), &caller, black_box(&denied)))
    });
    // A certificate identity names no policies: every installed one is consulted.
    g.bench_function("all_10_policies_allow", |b| {
        b.iter(|| policy::decide(black_box(&all), &caller, black_box(&allowed)))
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// audit_append
// ---------------------------------------------------------------------------------------------

/// The record of an allowed read, as `Seam` writes it (no secret data in audit events).
fn audit_event(i: u64) -> pb::AuditEvent {
    pb::AuditEvent {
        time_ms: 1_700_000_000_000 + i,
        node: "us-east-1".into(),
        region: "us-east".into(),
        principal: "service:acme:api".into(),
        action: "secrets:read".into(),
        resource: "acme/app/db-password".into(),
        decision: "allow".into(),
        statement: "acme-app#0 (app-rw)".into(),
        request_id: format!("{i:032x}"),
        source: "10.0.0.7:50412".into(),
        consistency: "local".into(),
        severity: "info".into(),
        credential: "token:bench-accessor".into(),
        ..Default::default()
    }
}

/// `AuditFile::append` until durable: one at a time (one record per fdatasync), and 64
/// concurrent appends awaited together (group commit; throughput in events/s).
fn audit_append(c: &mut Criterion) {
    let dir = scratch_dir();
    let audit = Arc::new(AuditFile::open(dir.path().join("audit.log"), AuditOptions::default()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let seq = Arc::new(AtomicU64::new(0));
    let next_event = {
        let seq = seq.clone();
        move || audit_event(seq.fetch_add(1, Ordering::Relaxed))
    };
    rt.block_on(audit.append(next_event())).unwrap();

    let mut g = c.benchmark_group("audit_append");
    // Each iteration waits for the disk (milliseconds): fewer samples keep the run short.
    g.sample_size(30);
    g.throughput(Throughput::Elements(1));
    g.bench_function("one_at_a_time", |b| {
        b.iter(|| rt.block_on(audit.append(next_event())).unwrap())
    });
    g.throughput(Throughput::Elements(64));
    g.bench_function("64_concurrent", |b| {
        b.iter(|| {
            rt.block_on(async {
                let appends: Vec<_> = (0..64)
                    .map(|_| {
                        let audit = audit.clone();
                        let event = next_event();
                        tokio::spawn(async move { audit.append(event).await })
                    })
                    .collect();
                for a in appends {
                    a.await.unwrap().unwrap();
                }
            })
        })
    });
    g.finish();

    let written = seq.load(Ordering::Relaxed);
    let syncs = audit.syncs();
    eprintln!("audit_append: {written} records in {syncs} fdatasyncs");
    assert!(syncs >= 1 && syncs <= written, "{written} records, {syncs} syncs");
    let report = coffer::audit::rotation::verify_log(audit.path(), true).unwrap();
    assert!(report.is_ok(), "the bench left a broken chain: {report:?}");
    assert_eq!(report.records, written);
}

// ---------------------------------------------------------------------------------------------
// apply_batch
// ---------------------------------------------------------------------------------------------

/// Size of the fake secret value; its envelope carries it plus the 16-byte GCM tag.
const VALUE_BYTES: usize = 256;

fn log_entry(index: u64, cmd: pb::Command) -> Entry {
    let log_id = codec::log_id_from_pb(&pb::LogId {
        term: 1,
        node_id: 1,
        index,
    });
    Entry::new_normal(log_id, cmd)
}

/// A write of version 1 of a new secret `acme/app/bench-<i>`, as the API proposes it. The
/// envelope is the size of a sealed 256-byte value, with obviously fake bytes (0x5a).
fn put_secret_value(i: u64) -> pb::Command {
    pb::Command {
        proposed_at_ms: 1_700_000_000_000 + i,
        principal: "service:acme:api".into(),
        request_id: format!("{i:032x}"),
        op: Some(pb::command::Op::AddVersion(pb::AddVersion {
            name: format!("acme/app/bench-{i:010}"),
            version: 1,
            envelope: Some(pb::Envelope {
                format: 1,
                nonce: vec![0x5a; 12],
                ciphertext: vec![0x5a; VALUE_BYTES + 16],
                wrapped_keys: vec![pb::WrappedKey {
                    region: "us-east".into(),
                    provider: "local".into(),
                    key_id: "bench-kek".into(),
                    key_version: 1,
                    blob: vec![0x5a; 60],
                }],
            }),
            value_mac: vec![0x5a; 32],
            size: VALUE_BYTES as u32,
            alias: "CURRENT".into(),
            create_if_missing: Some(pb::SecretSpec {
                owner_team: "acme-app".into(),
                description: "bench secret".into(),
                ..Default::default()
            }),
            ..Default::default()
        })),
    }
}

/// Applies `entries` as openraft hands a committed batch to the state machine (no client
/// waiting: the responders are `None`).
async fn apply(sm: &mut StateMachineStore, entries: Vec<Entry>) {
    let batch = futures::stream::iter(entries.into_iter().map(|e| Ok((e, None))));
    sm.apply(batch).await.unwrap();
}

/// `RaftStateMachine::apply` of batches of 1, 16 and 128 committed secret writes into RocksDB
/// (one atomic write per batch, not fsynced: the log store's WAL syncs cover it).
fn apply_batch(c: &mut Criterion) {
    let dir = scratch_dir();
    let (_log, backend) = coffer_raft::rocks::open(&dir.path().join("node")).unwrap();
    let backend: Arc<dyn SmBackend> = Arc::new(backend);
    let mut sm = StateMachineStore::new(backend, Arc::new(coffer_model::app::SecretsModel)).unwrap();
    let reader = sm.reader();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Log indexes and secret numbers only move forward, so every entry is a new write, never a
    // replay the state machine answers without writing.
    let next_index = Cell::new(1u64);
    let next_secret = Cell::new(0u64);
    let batch = |n: u64| -> Vec<Entry> {
        (0..n)
            .map(|_| {
                let index = next_index.replace(next_index.get() + 1);
                let i = next_secret.replace(next_secret.get() + 1);
                log_entry(index, put_secret_value(i))
            })
            .collect()
    };

    // A bootstrapped cluster (secret writes are refused before it).
    let bootstrap = pb::Command {
        op: Some(pb::command::Op::Bootstrap(pb::Bootstrap {
            cluster: Some(pb::ClusterInfo {
                cluster_id: "bench".into(),
                root_token_sha256: vec![0; 32],
                ..Default::default()
            }),
            request_retention_ms: 0,
        })),
        ..Default::default()
    };
    let index = next_index.replace(next_index.get() + 1);
    rt.block_on(apply(&mut sm, vec![log_entry(index, bootstrap)]));
    assert!(query::cluster_info(&*reader.view()).unwrap().is_some());

    // The commands measured succeed: the model's result for a batch is Ok (checked on a dry
    // run, since openraft's responders cannot be built here), and the real apply stores them.
    let first = batch(16);
    {
        let view = reader.view();
        let mut ov = Overlay::new(&*view);
        for e in &first {
            let EntryPayload::Normal(cmd) = &e.payload else {
                unreachable!("the batch holds commands only")
            };
            let r = coffer_model::apply::apply(&mut ov, cmd, e.log_id.index).unwrap();
            assert!(matches!(r.outcome, Some(pb::command_result::Outcome::Ok(_))), "{r:?}");
        }
    }
    rt.block_on(apply(&mut sm, first));
    let check_stored = |upto_secret: u64| {
        let view = reader.view();
        let name = format!("acme/app/bench-{:010}", upto_secret - 1);
        let secret = query::secret(&*view, &name).unwrap();
        assert_eq!(secret.next_version, 2, "{name}");
        let version = query::version(&*view, &name, 1).unwrap();
        assert_eq!(version.envelope.unwrap().ciphertext.len(), VALUE_BYTES + 16);
        let applied = coffer_raft::state_machine::applied_index_in(&*view).unwrap();
        assert_eq!(applied, next_index.get() - 1);
    };
    check_stored(next_secret.get());

    let mut g = c.benchmark_group("apply_batch");
    g.sample_size(50);
    for n in [1u64, 16, 128] {
        g.throughput(Throughput::Elements(n));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_batched(
                || batch(n),
                |entries| rt.block_on(apply(&mut sm, entries)),
                BatchSize::SmallInput,
            )
        });
        check_stored(next_secret.get());
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// census_scan
// ---------------------------------------------------------------------------------------------

/// Versions in the census bench's state (4 KiB values: 40 MB of ciphertext).
const CENSUS_VERSIONS: u64 = 10_000;

/// Counts the versions without an `ap-south` wrap, page by page as the census does: decoding
/// every version whole, or only its wrapped keys.
fn count_missing(view: &dyn coffer_kv::KvView, wraps_only: bool) -> u64 {
    let mut missing = 0;
    let mut count = |wraps: &[pb::WrappedKey]| {
        if !wraps.iter().any(|w| w.region == "ap-south") {
            missing += 1;
        }
    };
    let mut after = None;
    loop {
        let next = if wraps_only {
            query::live_version_wraps_page(view, after.as_ref(), 256, &mut count).unwrap()
        } else {
            let (page, next) = query::live_versions_page(view, after.as_ref(), 256).unwrap();
            for v in &page {
                count(&v.envelope.as_ref().unwrap().wrapped_keys);
            }
            next
        };
        match next {
            Some(n) => after = Some(n),
            None => return missing,
        }
    }
}

/// The rewrap census's scan (every 30 s on every node) over 10 000 stored 4 KiB versions wrapped
/// for two of three regions.
fn census_scan(c: &mut Criterion) {
    let dir = scratch_dir();
    let (_log, backend) = coffer_raft::rocks::open(&dir.path().join("node")).unwrap();
    let mut writes = WriteSet::new();
    for i in 0..CENSUS_VERSIONS {
        let name = format!("acme/app/census-{i:05}");
        let version = pb::SecretVersion {
            name: name.clone(),
            version: 1,
            state: pb::VersionState::Enabled as i32,
            envelope: Some(pb::Envelope {
                format: 1,
                nonce: vec![0x5a; 12],
                ciphertext: vec![0x5a; 4096 + 16],
                wrapped_keys: ["us-east", "eu-west"]
                    .map(|region| pb::WrappedKey {
                        region: region.into(),
                        provider: "local".into(),
                        key_id: "bench-kek".into(),
                        key_version: 1,
                        blob: vec![0x5a; 60],
                    })
                    .to_vec(),
            }),
            ..Default::default()
        };
        writes.insert(
            coffer_model::keys::version(&name, 1),
            Some(prost::Message::encode_to_vec(&version)),
        );
    }
    backend.commit(writes).unwrap();
    let view = backend.view();
    assert_eq!(count_missing(&*view, false), CENSUS_VERSIONS);
    assert_eq!(count_missing(&*view, true), CENSUS_VERSIONS);

    let mut g = c.benchmark_group("census_scan");
    g.sample_size(10);
    g.throughput(Throughput::Elements(CENSUS_VERSIONS));
    for (label, wraps_only) in [("full_decode", false), ("wraps_only", true)] {
        g.bench_function(label, |b| b.iter(|| black_box(count_missing(&*view, wraps_only))));
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// usage_record
// ---------------------------------------------------------------------------------------------

/// What read telemetry adds to every value read: one `UsageBook::record` (a lock, a hash
/// lookup, two counters), for a version read before, in a book holding one version and one
/// holding 10 000 (the lookup's cost as the book fills), and for a book at its bound, where
/// every 1 250th new version scans the book and forgets its least recently read sixteenth (the
/// cost per new version, amortized over those the scan makes room for).
fn usage_record(c: &mut Criterion) {
    use coffer::usage::book::UsageBook;
    use coffer::usage::book::MAX_VERSIONS;
    const T0: u64 = 1_800_000_000_000;
    let one = UsageBook::new(T0);
    one.record("acme/app/db-password", 1, "service:acme:api", T0);
    let many = UsageBook::new(T0);
    for i in 0..10_000u64 {
        many.record(&format!("acme/app/secret-{}", i / 4), i % 4, "service:acme:api", T0 + i);
    }
    let report = many.report(&["acme/app/secret-7".into()], T0 + 10_000);
    assert_eq!(report.secrets[0].versions.len(), 4);
    let full = UsageBook::new(T0);
    for i in 0..MAX_VERSIONS as u64 {
        full.record(&format!("acme/app/secret-{i}"), 1, "service:acme:api", T0 + i);
    }
    let now = Cell::new(T0 + 1_000_000);
    let mut g = c.benchmark_group("usage_record");
    g.throughput(Throughput::Elements(1));
    g.bench_function("known_version_1_tracked", |b| {
        b.iter(|| one.record(black_box("acme/app/db-password"), 1, "service:acme:api", T0 + 5))
    });
    g.bench_function("known_version_10000_tracked", |b| {
        b.iter(|| many.record(black_box("acme/app/secret-1234"), 2, "service:acme:api", T0 + 5))
    });
    g.bench_function("new_version_at_the_bound_evicts", |b| {
        b.iter(|| {
            let t = now.get() + 1;
            now.set(t);
            full.record(black_box(&format!("acme/new/{t}")), 1, "service:acme:api", t)
        })
    });
    g.finish();
    let r = full.report(&[format!("acme/new/{}", now.get())], now.get());
    assert_eq!(r.secrets.len(), 1, "the newest version is kept");
    assert!(r.forgotten_through_ms >= T0, "older ones were forgotten");
}

criterion_group!(
    benches,
    policy_check,
    audit_append,
    apply_batch,
    census_scan,
    usage_record
);
criterion_main!(benches);

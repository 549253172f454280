//! Hot path of a read: opening an envelope with a cached data key, and sealing for a write.
//! `cargo bench --bench crypto` (numbers and method in benches/README.md).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use coffer::crypto::envelope;
use coffer::crypto::kms::local::LocalKms;
use coffer::crypto::kms::Kms;
use coffer::crypto::kms::KmsSet;
use coffer::crypto::vault::Vault;
use coffer::crypto::DataKey;
use coffer::crypto::SecretValue;
use coffer::pb;
use criterion::criterion_group;
use criterion::criterion_main;
use criterion::BenchmarkId;
use criterion::Criterion;
use criterion::Throughput;

fn envelope_open(c: &mut Criterion) {
    let mut g = c.benchmark_group("envelope");
    for size in [256usize, 4096] {
        let dek = DataKey::generate().unwrap();
        let value = vec![0x5a; size];
        let env = envelope::seal(&dek, &value, "acme/bench", 1).unwrap();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("open", size), &env, |b, env| {
            b.iter(|| envelope::open(black_box(&dek), black_box(env), "acme/bench", 1).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("seal", size), &value, |b, value| {
            b.iter(|| envelope::seal(black_box(&dek), black_box(value), "acme/bench", 1).unwrap())
        });
    }
    g.finish();
}

/// The full read-side crypto of a steady-state read: DEK cache hit, open, crc32c check.
fn vault_open_cached(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let kms: Arc<dyn Kms> = Arc::new(LocalKms::open(dir.path(), "us-east", true).unwrap());
    let vault = Vault::new(
        Arc::new(KmsSet::new("us-east", vec![kms], Default::default()).unwrap()),
        Duration::from_secs(3600),
        1000,
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("vault_open_cached");
    for size in [256usize, 4096] {
        let value = SecretValue::new(vec![0x5a; size]);
        let sealer = rt.block_on(vault.prepare("acme/bench")).unwrap();
        let version = pb::SecretVersion {
            name: "acme/bench".into(),
            version: 1,
            state: pb::VersionState::Enabled as i32,
            envelope: Some(sealer.seal(&value, 1).unwrap()),
            crc32c: crc32c::crc32c(value.expose()),
            ..Default::default()
        };
        rt.block_on(vault.open(&version.name, version.version, &version))
            .unwrap(); // warm the DEK cache
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &version, |b, v| {
            b.iter(|| rt.block_on(vault.open(&v.name, v.version, black_box(v))).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, envelope_open, vault_open_cached);
criterion_main!(benches);

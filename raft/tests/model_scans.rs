//! The model's paged scans over both state-machine backends: the RocksDB view and the memory
//! view must page the same way (prefix bounds, start keys, limits).

use coffer_kv::KvView;
use coffer_model::keys;
use coffer_model::pb;
use coffer_model::query::live_version_wraps_page;
use coffer_model::query::live_versions_page;
use coffer_raft::mem::MemSmBackend;
use coffer_raft::storage::SmBackend;
use prost::Message;

/// Versions of two secrets, one destroyed, each live one wrapped for its own region set.
fn versions() -> coffer_kv::WriteSet {
    let mut w = coffer_kv::WriteSet::new();
    for (name, version, destroyed) in [
        ("acme/a", 1, false),
        ("acme/a", 2, true),
        ("acme/a", 3, false),
        ("acme/b", 1, false),
        ("acme/c", 1, false),
    ] {
        let envelope = (!destroyed).then(|| pb::Envelope {
            format: 1,
            nonce: vec![1; 12],
            ciphertext: vec![0x5a; 300],
            wrapped_keys: (0..version)
                .map(|i| pb::WrappedKey {
                    region: format!("region-{i}"),
                    key_id: format!("{name}-key"),
                    key_version: version as u32,
                    blob: vec![7; 40],
                    ..Default::default()
                })
                .collect(),
        });
        let v = pb::SecretVersion {
            name: name.into(),
            version,
            state: if destroyed {
                pb::VersionState::Destroyed
            } else {
                pb::VersionState::Enabled
            } as i32,
            envelope,
            ..Default::default()
        };
        w.insert(keys::version(name, version), Some(v.encode_to_vec()));
    }
    w.insert(keys::secret("acme/z"), Some(pb::Secret::default().encode_to_vec()));
    w
}

/// Wrapped keys per live version, paged by `scan` 2 versions at a time.
fn paged_wraps(view: &dyn KvView, wraps_only: bool) -> Vec<Vec<pb::WrappedKey>> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let next = if wraps_only {
            live_version_wraps_page(view, after.as_ref(), 2, &mut |w| out.push(w.to_vec())).unwrap()
        } else {
            let (page, next) = live_versions_page(view, after.as_ref(), 2).unwrap();
            out.extend(page.into_iter().map(|v| v.envelope.unwrap().wrapped_keys));
            next
        };
        match next {
            Some(n) => after = Some(n),
            None => return out,
        }
    }
}

#[test]
fn the_wraps_scan_sees_what_the_full_scan_sees_on_both_backends() {
    let mem = MemSmBackend::new();
    mem.commit(versions()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_log, rocks) = coffer_raft::rocks::open(dir.path()).unwrap();
    rocks.commit(versions()).unwrap();
    for backend in [&mem as &dyn SmBackend, &rocks] {
        let view = backend.view();
        let full = paged_wraps(&*view, false);
        assert_eq!(full.len(), 4, "four live versions, the destroyed one left out");
        assert_eq!(full.iter().map(Vec::len).collect::<Vec<_>>(), [1, 3, 1, 1]);
        assert_eq!(paged_wraps(&*view, true), full);
    }
}

//! `max_versions`: which versions a secret keeps (docs/architecture.md: Data model).
//!
//! A secret keeps its newest `max_versions` versions, and an older one only while an alias
//! points at it (CURRENT, PREVIOUS, PENDING or a user alias): the cap never takes a version a
//! reader is pointed at. Every other version's record is deleted ("pruned"): its number is
//! never reused, a read of it answers NotFound, and the command that pruned it lists it in
//! `CommandOk.pruned`, so every node forgets its data key and shreds its bytes
//! (`Application::shreds`).
//!
//! Invariants, kept with work in proportion to the aliases (no scan of the versions):
//! - every version in `[max(pruned_below, 1), next_version)` has its record;
//! - below `pruned_below`, exactly the versions in `held` have one, and each had an alias when
//!   the cap passed it; it is pruned by the first command after no alias points at it;
//! - so a secret holds at most `max_versions` + [`MAX_ALIASES`] version records.

use std::collections::BTreeSet;

use crate::error::decode;
use crate::error::fail;
use crate::error::Result;
use crate::keys;
use crate::pb;
use crate::pb::ErrorCode;
use coffer_kv::Txn;

/// Versions kept when a secret's spec names no cap (`max_versions` 0).
pub const DEFAULT_MAX_VERSIONS: u32 = 100;
/// Most aliases one secret may be given (PREVIOUS, which moves of CURRENT maintain, may make
/// one more).
pub const MAX_ALIASES: usize = 32;

/// The cap in force for `secret`.
pub fn max_versions(secret: &pb::Secret) -> u64 {
    match secret.max_versions {
        0 => u64::from(DEFAULT_MAX_VERSIONS),
        n => u64::from(n),
    }
}

/// The cap a new secret gets: its spec's, else the cluster's default (`ClusterInfo`), else 0
/// (which [`max_versions`] reads as [`DEFAULT_MAX_VERSIONS`]).
pub(crate) fn cap_for_new(tx: &Txn<'_, '_>, spec: &pb::SecretSpec) -> Result<u32> {
    if spec.max_versions != 0 {
        return Ok(spec.max_versions);
    }
    Ok(match tx.get(keys::CLUSTER)? {
        Some(b) => decode::<pb::ClusterInfo>(&b, "cluster record")?.default_max_versions,
        None => 0,
    })
}

/// Refuses a new alias past [`MAX_ALIASES`]; moving an existing one is always allowed.
pub(crate) fn check_alias_room(secret: &pb::Secret, alias: &str) -> Result<()> {
    if !secret.aliases.contains_key(alias) && secret.aliases.len() >= MAX_ALIASES {
        return fail(
            ErrorCode::FailedPrecondition,
            format!(
                "secret {} already has {MAX_ALIASES} aliases; move or delete one first",
                secret.name
            ),
        );
    }
    Ok(())
}

/// Deletes the versions the cap no longer keeps, after a command added a version or moved or
/// removed an alias; returns them in ascending order. The caller saves `secret`.
pub(crate) fn prune(tx: &mut Txn<'_, '_>, secret: &mut pb::Secret) -> Result<Vec<u64>> {
    let mut aliased: BTreeSet<u64> = secret.aliases.values().copied().collect();
    if coffer_kv::bugs::active(coffer_kv::bugs::Bug::PruneAliased) {
        aliased.clear();
    }
    let mut pruned = Vec::new();
    let mut held = std::mem::take(&mut secret.held);
    held.retain(|v| {
        let keep = aliased.contains(v);
        if !keep {
            pruned.push(*v);
        }
        keep
    });
    let max = max_versions(secret);
    let mut floor = secret.pruned_below.max(1);
    while secret.next_version.saturating_sub(floor) > max {
        if aliased.contains(&floor) {
            held.push(floor);
        } else {
            pruned.push(floor);
        }
        floor += 1;
    }
    if floor > 1 {
        secret.pruned_below = floor;
    }
    secret.held = held;
    pruned.sort_unstable();
    for v in &pruned {
        tx.delete(keys::version(&secret.name, *v));
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use crate::pb;
    use crate::query;
    use crate::test_sm::Sm;

    fn create(sm: &mut Sm, name: &str, max_versions: u32) {
        sm.run(pb::command::Op::CreateSecret(pb::CreateSecret {
            name: name.into(),
            spec: Some(pb::SecretSpec {
                max_versions,
                ..Default::default()
            }),
        }))
        .unwrap();
    }

    fn put(sm: &mut Sm, name: &str, version: u64, alias: &str) -> Vec<u64> {
        sm.put(name, version, alias).unwrap().pruned
    }

    fn kept(sm: &Sm, name: &str) -> Vec<u64> {
        let (versions, _) = query::versions(&*sm.backend.view(), name, 0, 100_000).unwrap();
        versions.iter().map(|v| v.version).collect()
    }

    #[test]
    fn the_newest_versions_are_kept_and_the_rest_pruned_as_they_fall_out() {
        let mut sm = Sm::new();
        create(&mut sm, "acme/db", 3);
        for v in 1..=3 {
            assert!(put(&mut sm, "acme/db", v, "CURRENT").is_empty());
        }
        // v4 makes four; v1 (no alias: PREVIOUS is v3) goes.
        assert_eq!(put(&mut sm, "acme/db", 4, "CURRENT"), vec![1]);
        assert_eq!(kept(&sm, "acme/db"), vec![2, 3, 4]);
        let e = query::version(&*sm.backend.view(), "acme/db", 1).unwrap_err();
        assert!(e.to_string().contains("no version 1"), "{e}");
        assert_eq!(put(&mut sm, "acme/db", 5, "CURRENT"), vec![2]);
        assert_eq!(kept(&sm, "acme/db"), vec![3, 4, 5]);
    }

    #[test]
    fn an_aliased_version_is_held_past_the_cap_until_its_alias_leaves() {
        let mut sm = Sm::new();
        create(&mut sm, "acme/db", 2);
        put(&mut sm, "acme/db", 1, "CURRENT");
        put(&mut sm, "acme/db", 2, "");
        put(&mut sm, "acme/db", 3, "");
        // CURRENT still points at v1: the cap passes it but keeps it.
        assert_eq!(kept(&sm, "acme/db"), vec![1, 2, 3]);
        assert_eq!(put(&mut sm, "acme/db", 4, ""), vec![2], "v2 had no alias");
        assert_eq!(kept(&sm, "acme/db"), vec![1, 3, 4]);
        // Promoting v4 makes v1 PREVIOUS: still held.
        assert!(sm.promote("acme/db", "CURRENT", 4, 1).unwrap().pruned.is_empty());
        assert_eq!(kept(&sm, "acme/db"), vec![1, 3, 4]);
        // Promoting v3 makes v4 PREVIOUS: v1 has no alias now and goes.
        assert_eq!(sm.promote("acme/db", "CURRENT", 3, 4).unwrap().pruned, vec![1]);
        assert_eq!(kept(&sm, "acme/db"), vec![3, 4]);
    }

    #[test]
    fn destroying_a_held_version_prunes_it_and_a_secret_without_a_cap_keeps_the_default() {
        let mut sm = Sm::new();
        create(&mut sm, "acme/db", 1);
        put(&mut sm, "acme/db", 1, "CURRENT");
        put(&mut sm, "acme/db", 2, "CURRENT");
        assert_eq!(kept(&sm, "acme/db"), vec![1, 2], "v1 is PREVIOUS");
        let r = sm
            .run(pb::command::Op::DestroyVersion(pb::DestroyVersion {
                name: "acme/db".into(),
                version: 1,
            }))
            .unwrap();
        assert_eq!(r.pruned, vec![1]);
        assert_eq!(kept(&sm, "acme/db"), vec![2]);

        let max = u64::from(super::DEFAULT_MAX_VERSIONS);
        for v in 1..=max + 2 {
            put(&mut sm, "acme/nocap", v, "CURRENT");
        }
        let left = kept(&sm, "acme/nocap");
        assert_eq!(left.len() as u64, max);
        assert_eq!(left[0], 3);
    }

    #[test]
    fn secrets_created_without_a_cap_take_the_clusters_default() {
        let mut sm = Sm::empty();
        sm.run(pb::command::Op::Bootstrap(pb::Bootstrap {
            cluster: Some(pb::ClusterInfo {
                cluster_id: "test".into(),
                root_token_sha256: vec![0; 32],
                default_max_versions: 2,
                ..Default::default()
            }),
            request_retention_ms: 0,
        }))
        .unwrap();
        for v in 1..=4 {
            put(&mut sm, "acme/by-put", v, "CURRENT");
        }
        assert_eq!(kept(&sm, "acme/by-put"), vec![3, 4]);
        create(&mut sm, "acme/own-cap", 3);
        create(&mut sm, "acme/no-cap", 0);
        for v in 1..=4 {
            put(&mut sm, "acme/own-cap", v, "CURRENT");
            put(&mut sm, "acme/no-cap", v, "CURRENT");
        }
        assert_eq!(kept(&sm, "acme/own-cap"), vec![2, 3, 4]);
        assert_eq!(kept(&sm, "acme/no-cap"), vec![3, 4]);
        let s = query::secret(&*sm.backend.view(), "acme/no-cap").unwrap();
        assert_eq!(s.max_versions, 2, "the cap is fixed when the secret is created");
    }

    #[test]
    fn aliases_per_secret_are_bounded() {
        let mut sm = Sm::new();
        put(&mut sm, "acme/db", 1, "CURRENT");
        for i in 1..super::MAX_ALIASES {
            sm.promote("acme/db", &format!("a{i}"), 1, 0).unwrap();
        }
        let e = sm.promote("acme/db", "one-more", 1, 0).unwrap_err();
        assert_eq!(e.code, pb::ErrorCode::FailedPrecondition);
        assert!(e.message.contains("32 aliases"), "{}", e.message);
        // Moving an alias that exists is still fine.
        put(&mut sm, "acme/db", 2, "");
        sm.promote("acme/db", "a1", 2, 1).unwrap();
    }
}

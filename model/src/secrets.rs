//! Secrets, their versions and aliases as commands change them (docs/architecture.md: Data
//! model). Called by [`crate::apply::apply`] inside one command's [`Txn`].

use prost::Message;

use crate::aliases::point_alias;
pub(crate) use crate::context::At;
use crate::error::decode;
use crate::error::fail;
use crate::error::ModelError;
use crate::error::Result;
use crate::keys;
use crate::names;
use crate::pb;
use crate::pb::ErrorCode;
use crate::version_cap;
use coffer_kv::Txn;

/// Largest plaintext value accepted (64 KiB).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

fn etag(log_index: u64) -> String {
    format!("{log_index:016x}")
}

pub fn load_secret(tx: &Txn<'_, '_>, name: &str) -> Result<Option<pb::Secret>> {
    match tx.get(&keys::secret(name))? {
        Some(b) => Ok(Some(decode(&b, "secret")?)),
        None => Ok(None),
    }
}

/// `secret` (as [`load_secret`] read it), or NotFound.
pub(crate) fn require_secret(secret: Option<pb::Secret>, name: &str) -> Result<pb::Secret> {
    secret.ok_or_else(|| ModelError::new(ErrorCode::NotFound, format!("secret {name} not found")).into())
}

/// Version `version` of `name`, if it has a record.
pub(crate) fn load_version(tx: &Txn<'_, '_>, name: &str, version: u64) -> Result<Option<pb::SecretVersion>> {
    match tx.get(&keys::version(name, version))? {
        Some(b) => Ok(Some(decode(&b, "version")?)),
        None => Ok(None),
    }
}

fn require_version(tx: &Txn<'_, '_>, name: &str, version: u64) -> Result<pb::SecretVersion> {
    match load_version(tx, name, version)? {
        Some(v) => Ok(v),
        None => fail(ErrorCode::NotFound, format!("secret {name} has no version {version}")),
    }
}

fn new_secret(name: &str, spec: &pb::SecretSpec, principal: &str, now: u64) -> pb::Secret {
    pb::Secret {
        name: name.to_string(),
        owner_team: spec.owner_team.clone(),
        description: spec.description.clone(),
        labels: spec.labels.clone(),
        created_at_ms: now,
        updated_at_ms: now,
        next_version: 1,
        aliases: Default::default(),
        rotation: spec.rotation.clone(),
        max_versions: spec.max_versions,
        etag: String::new(),
        created_by: principal.to_string(),
        pruned_below: 0,
        held: vec![],
        ..Default::default()
    }
}

pub(crate) fn ok(secret: &pb::Secret, version: u64) -> pb::CommandOk {
    pb::CommandOk {
        etag: secret.etag.clone(),
        version,
        aliases: secret.aliases.clone(),
        ..Default::default()
    }
}

/// Stores a changed secret with a new etag and update time, and its rotation queue entry
/// where its policy and run now put it.
pub(crate) fn save_secret(tx: &mut Txn<'_, '_>, secret: &mut pb::Secret, at: &At<'_>) {
    secret.updated_at_ms = at.now;
    secret.etag = etag(at.log_index);
    crate::rotation::requeue(tx, secret);
    tx.put(keys::secret(&secret.name), secret.encode_to_vec());
}

pub(crate) fn create_secret(
    tx: &mut Txn<'_, '_>,
    existing: Option<pb::Secret>,
    c: &pb::CreateSecret,
    at: &At<'_>,
) -> Result<pb::CommandOk> {
    if existing.is_some() {
        return fail(ErrorCode::AlreadyExists, format!("secret {} already exists", c.name));
    }
    let mut spec = c.spec.clone().unwrap_or_default();
    crate::spec::validate(&spec)?;
    spec.max_versions = version_cap::cap_for_new(tx, &spec)?;
    let mut s = new_secret(&c.name, &spec, at.principal, at.now);
    save_secret(tx, &mut s, at);
    Ok(ok(&s, 0))
}

/// Replaces the secret's metadata if its etag is still the caller's (a read-modify-write by
/// compare-and-swap). A lower `max_versions` prunes what the cap no longer keeps in the same
/// command; 0 keeps the cap in force.
pub(crate) fn update_secret(
    tx: &mut Txn<'_, '_>,
    secret: Option<pb::Secret>,
    c: &pb::UpdateSecret,
    at: &At<'_>,
) -> Result<pb::CommandOk> {
    let mut secret = require_secret(secret, &c.name)?;
    if c.expected_etag.is_empty() {
        return fail(
            ErrorCode::InvalidArgument,
            "expected_etag is required: describe the secret and send its etag",
        );
    }
    if c.expected_etag != secret.etag {
        return fail(
            ErrorCode::EtagMismatch,
            format!(
                "secret {} changed since it was read (etag {}, not {})",
                c.name, secret.etag, c.expected_etag
            ),
        );
    }
    let spec = c.spec.clone().unwrap_or_default();
    crate::spec::validate(&spec)?;
    secret.owner_team = spec.owner_team;
    secret.description = spec.description;
    secret.labels = spec.labels;
    secret.rotation = spec.rotation;
    if spec.max_versions != 0 {
        secret.max_versions = spec.max_versions;
    }
    let pruned = version_cap::prune(tx, &mut secret)?;
    save_secret(tx, &mut secret, at);
    Ok(pb::CommandOk {
        pruned,
        ..ok(&secret, 0)
    })
}

pub(crate) fn add_version(
    tx: &mut Txn<'_, '_>,
    existing: Option<pb::Secret>,
    c: &pb::AddVersion,
    at: &At<'_>,
) -> Result<pb::CommandOk> {
    let mut envelope = match &c.envelope {
        Some(e) if !e.ciphertext.is_empty() && !e.wrapped_keys.is_empty() => e.clone(),
        _ => {
            return fail(
                ErrorCode::InvalidArgument,
                "a version needs an envelope with at least one wrapped key",
            )
        }
    };
    if c.size as usize > MAX_VALUE_BYTES {
        return fail(
            ErrorCode::InvalidArgument,
            format!("value exceeds {MAX_VALUE_BYTES} bytes"),
        );
    }
    let alias = if c.alias.is_empty() {
        None
    } else {
        let a = names::normalize_alias(&c.alias).map_err(ModelError::from)?;
        if a == names::PREVIOUS {
            return fail(ErrorCode::InvalidArgument, "PREVIOUS is maintained by moves of CURRENT");
        }
        Some(a)
    };
    let mut secret = match (existing, &c.create_if_missing) {
        (Some(s), _) => s,
        (None, Some(spec)) => {
            crate::spec::validate(spec)?;
            let spec = pb::SecretSpec {
                max_versions: version_cap::cap_for_new(tx, spec)?,
                ..spec.clone()
            };
            new_secret(&c.name, &spec, at.principal, at.now)
        }
        (None, None) => return fail(ErrorCode::NotFound, format!("secret {} not found", c.name)),
    };
    let version = secret.next_version;
    if c.version != version {
        // Lost the race for c.version: use the sealing for the version that is next, if sent.
        let Some(alt) = c
            .also_for
            .iter()
            .find(|a| a.version == version && !a.ciphertext.is_empty())
        else {
            return Err(ModelError {
                code: ErrorCode::VersionConflict,
                message: format!(
                    "version {} of {} was taken; the next version is {}",
                    c.version, c.name, secret.next_version
                ),
                next_version: secret.next_version,
                actual_version: 0,
            }
            .into());
        };
        envelope.nonce = alt.nonce.clone();
        envelope.ciphertext = alt.ciphertext.clone();
    }
    let mut record = pb::SecretVersion {
        name: c.name.clone(),
        version,
        state: pb::VersionState::Enabled as i32,
        envelope: Some(envelope),
        crc32c: c.crc32c,
        created_by: at.principal.to_string(),
        created_at_ms: at.now,
        expires_at_ms: c.expires_at_ms,
        disabled_at_ms: 0,
        destroyed_at_ms: 0,
        size: c.size,
        request_id: at.request_id.to_string(),
        created_index: at.log_index,
        rotation_run: 0,
    };
    if let Some(a) = &alias {
        version_cap::check_alias_room(&secret, a)?;
    }
    // A PENDING value put while a run waits for its value is that run's value (a person's
    // answer to a manual run, a rotator's to a hook call); one for a named run must find it
    // waiting.
    let run = match (c.rotation_run, alias.as_deref()) {
        (0, Some(names::PENDING)) => crate::rotation::waiting_run(&secret),
        (0, _) => None,
        (r, a) => match crate::rotation::check_pending(&mut secret, r, a) {
            Ok(()) => Some(r),
            Err(_)
                if a == Some(names::PENDING) && coffer_kv::bugs::active(coffer_kv::bugs::Bug::LateHookWriteLands) =>
            {
                None
            }
            Err(e) => return Err(e),
        },
    };
    record.rotation_run = run.unwrap_or(0);
    tx.put(keys::version(&c.name, version), record.encode_to_vec());
    secret.next_version += 1;
    if let Some(a) = alias {
        point_alias(&mut secret, &a, version, at.now);
    }
    if let Some(run) = run {
        crate::rotation::pending_written(&mut secret, run, version, at)?;
    }
    let pruned = version_cap::prune(tx, &mut secret)?;
    save_secret(tx, &mut secret, at);
    Ok(pb::CommandOk {
        pruned,
        ..ok(&secret, version)
    })
}

pub(crate) fn move_alias(
    tx: &mut Txn<'_, '_>,
    secret: Option<pb::Secret>,
    c: &pb::MoveAlias,
    at: &At<'_>,
) -> Result<pb::CommandOk> {
    let alias = names::normalize_alias(&c.alias).map_err(ModelError::from)?;
    if alias == names::PREVIOUS {
        return fail(ErrorCode::InvalidArgument, "PREVIOUS is maintained by moves of CURRENT");
    }
    let mut secret = require_secret(secret, &c.name)?;
    let target = require_version(tx, &c.name, c.version)?;
    if target.state == pb::VersionState::Destroyed as i32 {
        return fail(
            ErrorCode::VersionDestroyed,
            format!("version {} of {} is destroyed", c.version, c.name),
        );
    }
    if target.state != pb::VersionState::Enabled as i32 {
        return fail(
            ErrorCode::VersionDisabled,
            format!("version {} of {} is not enabled", c.version, c.name),
        );
    }
    let actual = secret.aliases.get(&alias).copied().unwrap_or(0);
    if actual != c.expected_version && !coffer_kv::bugs::active(coffer_kv::bugs::Bug::CasIgnore) {
        return Err(ModelError {
            code: ErrorCode::CasFailed,
            message: format!(
                "alias {alias} of {} points at version {actual}, not the expected {}",
                c.name, c.expected_version
            ),
            next_version: 0,
            actual_version: actual,
        }
        .into());
    }
    if actual == c.version {
        return Ok(ok(&secret, c.version));
    }
    version_cap::check_alias_room(&secret, &alias)?;
    point_alias(&mut secret, &alias, c.version, at.now);
    let pruned = version_cap::prune(tx, &mut secret)?;
    save_secret(tx, &mut secret, at);
    Ok(pb::CommandOk {
        pruned,
        ..ok(&secret, c.version)
    })
}

/// Destroys `v` (not CURRENT, not destroyed yet): its envelope goes, and every alias on it.
/// The caller prunes and saves `secret`.
pub(crate) fn destroy(tx: &mut Txn<'_, '_>, secret: &mut pb::Secret, mut v: pb::SecretVersion, at: &At<'_>) {
    v.state = pb::VersionState::Destroyed as i32;
    v.envelope = None;
    v.destroyed_at_ms = at.now;
    tx.put(keys::version(&secret.name, v.version), v.encode_to_vec());
    for a in crate::query::aliases_of(secret, v.version) {
        secret.aliases.remove(&a);
    }
}

/// Writes `v` enabled or disabled; the caller checked that it may (not destroyed, and not
/// CURRENT when disabling).
pub(crate) fn set_state(tx: &mut Txn<'_, '_>, mut v: pb::SecretVersion, enable: bool, at: &At<'_>) {
    v.state = if enable {
        pb::VersionState::Enabled
    } else {
        pb::VersionState::Disabled
    } as i32;
    v.disabled_at_ms = if enable { 0 } else { at.now };
    tx.put(keys::version(&v.name, v.version), v.encode_to_vec());
}

pub(crate) fn set_version_state(
    tx: &mut Txn<'_, '_>,
    secret: Option<pb::Secret>,
    c: &pb::SetVersionState,
    at: &At<'_>,
) -> Result<pb::CommandOk> {
    let enable = match pb::VersionState::try_from(c.state) {
        Ok(pb::VersionState::Enabled) => true,
        Ok(pb::VersionState::Disabled) => false,
        _ => return fail(ErrorCode::InvalidArgument, "a version can only be enabled or disabled"),
    };
    let mut secret = require_secret(secret, &c.name)?;
    let v = require_version(tx, &c.name, c.version)?;
    if v.state == pb::VersionState::Destroyed as i32 {
        return fail(
            ErrorCode::VersionDestroyed,
            format!("version {} of {} is destroyed", c.version, c.name),
        );
    }
    if v.state == c.state {
        return Ok(ok(&secret, c.version));
    }
    if !enable && secret.aliases.get(names::CURRENT) == Some(&c.version) {
        return fail(
            ErrorCode::FailedPrecondition,
            format!(
                "version {} of {} is CURRENT; promote another version first",
                c.version, c.name
            ),
        );
    }
    set_state(tx, v, enable, at);
    save_secret(tx, &mut secret, at);
    Ok(ok(&secret, c.version))
}

pub(crate) fn destroy_version(
    tx: &mut Txn<'_, '_>,
    secret: Option<pb::Secret>,
    c: &pb::DestroyVersion,
    at: &At<'_>,
) -> Result<pb::CommandOk> {
    let mut secret = require_secret(secret, &c.name)?;
    let v = require_version(tx, &c.name, c.version)?;
    if v.state == pb::VersionState::Destroyed as i32 {
        return Ok(ok(&secret, c.version));
    }
    if secret.aliases.get(names::CURRENT) == Some(&c.version) {
        return fail(
            ErrorCode::FailedPrecondition,
            format!(
                "version {} of {} is CURRENT; promote another version first",
                c.version, c.name
            ),
        );
    }
    destroy(tx, &mut secret, v, at);
    let pruned = version_cap::prune(tx, &mut secret)?;
    save_secret(tx, &mut secret, at);
    Ok(pb::CommandOk {
        pruned,
        ..ok(&secret, c.version)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access_records;

    use crate::test_sm::add;
    use crate::test_sm::sealed_for;
    use crate::test_sm::Sm;

    #[test]
    fn versions_are_numbered_and_current_moves_previous() {
        let mut sm = Sm::new();
        let a = sm.put("acme/db", 1, "CURRENT").unwrap();
        assert_eq!(a.aliases.get("CURRENT"), Some(&1));
        let b = sm.put("acme/db", 2, "current").unwrap();
        assert_eq!(b.aliases.get("CURRENT"), Some(&2));
        assert_eq!(b.aliases.get("PREVIOUS"), Some(&1));
        assert_ne!(a.etag, b.etag);
        let err = sm.put("acme/db", 2, "CURRENT").unwrap_err();
        assert_eq!(err.code, ErrorCode::VersionConflict);
        assert_eq!(err.next_version, 3);
    }

    #[test]
    fn a_writer_that_lost_the_race_lands_with_its_sealing_for_the_next_version() {
        let mut sm = Sm::new();
        sm.put("acme/db", 1, "CURRENT").unwrap();
        sm.put("acme/db", 2, "CURRENT").unwrap();
        // Sealed for 2 (taken) and also for 3 and 4: version 3 is next, its sealing is kept.
        let mut op = add("acme/db", 2, "CURRENT");
        let pb::command::Op::AddVersion(a) = &mut op else {
            unreachable!()
        };
        a.also_for = sealed_for(3..=4);
        let ok = sm.run(op).unwrap();
        assert_eq!(ok.version, 3);
        assert_eq!(ok.aliases.get("PREVIOUS"), Some(&2));
        let view = sm.backend.view();
        let stored = pb::SecretVersion::decode(&*view.get(&keys::version("acme/db", 3)).unwrap().unwrap()).unwrap();
        let env = stored.envelope.unwrap();
        assert_eq!(
            (env.nonce, env.ciphertext),
            (vec![3; 12], vec![3; 20]),
            "the sealing bound to version 3"
        );
        assert_eq!(env.wrapped_keys.len(), 1);
        drop(view);
        // No sealing for the next version: still a conflict.
        let err = sm.put("acme/db", 3, "CURRENT").unwrap_err();
        assert_eq!((err.code, err.next_version), (ErrorCode::VersionConflict, 4));
    }

    #[test]
    fn a_retried_put_that_landed_on_an_also_for_version_is_not_applied_twice() {
        // Found by the simulations (seed 21): the retry of a put that had landed on its
        // also_for version was applied again on the next one.
        let mut sm = Sm::new();
        sm.put("acme/db", 1, "CURRENT").unwrap();
        let with_also_for = || {
            let mut op = add("acme/db", 1, "CURRENT");
            let pb::command::Op::AddVersion(a) = &mut op else {
                unreachable!()
            };
            a.also_for = sealed_for(2..=3);
            op
        };
        let first = sm.run_as(with_also_for(), "req-1").unwrap();
        assert_eq!(first.version, 2);
        let again = sm.run_as(with_also_for(), "req-1").unwrap();
        assert_eq!(again.version, 2, "the replay answers with the version it wrote");
        let next = sm.put("acme/db", 3, "CURRENT").unwrap();
        assert_eq!(next.version, 3, "version 3 is still free");
    }

    #[test]
    fn alias_moves_are_compare_and_swap() {
        let mut sm = Sm::new();
        sm.put("acme/db", 1, "CURRENT").unwrap();
        sm.put("acme/db", 2, "PENDING").unwrap();
        // Two promotes expecting CURRENT=1: the first wins, the second sees 2.
        let first = sm.promote("acme/db", "CURRENT", 2, 1).unwrap();
        assert_eq!(first.aliases.get("CURRENT"), Some(&2));
        assert_eq!(first.aliases.get("PREVIOUS"), Some(&1));
        assert_eq!(first.aliases.get("PENDING"), None, "promoted pending is cleared");
        let before = sm.snapshot();
        let second = sm.promote("acme/db", "CURRENT", 2, 1).unwrap_err();
        assert_eq!(second.code, ErrorCode::CasFailed);
        assert_eq!(second.actual_version, 2);
        assert_eq!(before, sm.snapshot(), "a failed CAS changes nothing");
        // Expected 0 means "alias must not exist yet".
        sm.promote("acme/db", "next", 1, 0).unwrap();
        assert_eq!(
            sm.promote("acme/db", "next", 2, 0).unwrap_err().code,
            ErrorCode::CasFailed
        );
        assert_eq!(
            sm.promote("acme/db", "PREVIOUS", 2, 1).unwrap_err().code,
            ErrorCode::InvalidArgument
        );
    }

    #[test]
    fn disable_enable_destroy() {
        let mut sm = Sm::new();
        sm.put("acme/db", 1, "CURRENT").unwrap();
        sm.put("acme/db", 2, "CURRENT").unwrap();
        let disable = |v| {
            pb::command::Op::SetVersionState(pb::SetVersionState {
                name: "acme/db".into(),
                version: v,
                state: pb::VersionState::Disabled as i32,
            })
        };
        assert_eq!(sm.run(disable(2)).unwrap_err().code, ErrorCode::FailedPrecondition);
        sm.run(disable(1)).unwrap();
        // An alias cannot point at a disabled version.
        assert_eq!(
            sm.promote("acme/db", "next", 1, 0).unwrap_err().code,
            ErrorCode::VersionDisabled
        );
        let destroy = |v| {
            pb::command::Op::DestroyVersion(pb::DestroyVersion {
                name: "acme/db".into(),
                version: v,
            })
        };
        assert_eq!(sm.run(destroy(2)).unwrap_err().code, ErrorCode::FailedPrecondition);
        let d = sm.run(destroy(1)).unwrap();
        assert_eq!(d.aliases.get("PREVIOUS"), None, "aliases on a destroyed version go");
        let view = sm.backend.view();
        let v: pb::SecretVersion =
            pb::SecretVersion::decode(&*view.get(&keys::version("acme/db", 1)).unwrap().unwrap()).unwrap();
        assert_eq!(v.state, pb::VersionState::Destroyed as i32);
        assert!(v.envelope.is_none(), "ciphertext and wrapped keys are removed");
        drop(view);
        // Destroyed is terminal.
        let enable = pb::command::Op::SetVersionState(pb::SetVersionState {
            name: "acme/db".into(),
            version: 1,
            state: pb::VersionState::Enabled as i32,
        });
        assert_eq!(sm.run(enable).unwrap_err().code, ErrorCode::VersionDestroyed);
        assert_eq!(
            sm.promote("acme/db", "next", 1, 0).unwrap_err().code,
            ErrorCode::VersionDestroyed
        );
        let view = sm.backend.view();
        let read = |selector| {
            crate::query::answer(
                &*view,
                &pb::ReadQuery {
                    query: Some(pb::read_query::Query::Get(pb::GetQuery {
                        name: "acme/db".into(),
                        selector: Some(selector),
                    })),
                },
            )
        };
        let code = |r: crate::query::Result<pb::ReadAnswer>| match r {
            Err(crate::query::QueryError::Model(e)) => e.code,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            code(read(pb::get_query::Selector::Version(1))),
            ErrorCode::VersionDestroyed
        );
    }

    #[test]
    fn bad_commands_change_nothing() {
        let mut sm = Sm::new();
        sm.put("acme/db", 1, "CURRENT").unwrap();
        let before = sm.snapshot();
        assert_eq!(
            sm.put("Acme/../x", 1, "CURRENT").unwrap_err().code,
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            sm.put("acme/db", 2, "Bad Alias").unwrap_err().code,
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            sm.promote("acme/db", "CURRENT", 9, 1).unwrap_err().code,
            ErrorCode::NotFound
        );
        assert_eq!(
            sm.promote("acme/nope", "CURRENT", 1, 0).unwrap_err().code,
            ErrorCode::NotFound
        );
        assert_eq!(
            sm.run(pb::command::Op::CreateSecret(pb::CreateSecret {
                name: "acme/db".into(),
                spec: None
            }))
            .unwrap_err()
            .code,
            ErrorCode::AlreadyExists
        );
        assert_eq!(before, sm.snapshot());
    }

    #[test]
    fn set_wraps_adds_or_replaces_a_regions_wrap_and_skips_other_envelopes() {
        let mut sm = Sm::new();
        sm.put("acme/a", 1, "CURRENT").unwrap();
        sm.put("acme/a", 2, "CURRENT").unwrap();
        let wrap = |region: &str, key: &str, blob: u8| pb::WrappedKey {
            region: region.into(),
            provider: "local".into(),
            key_id: key.into(),
            key_version: 1,
            blob: vec![blob; 8],
        };
        let entry = |version: u64, nonce: Vec<u8>, w: pb::WrappedKey| pb::RewrapEntry {
            name: "acme/a".into(),
            version,
            nonce,
            wrap: Some(w),
            token_key: false,
        };
        let wraps_of = |sm: &Sm, version: u64| -> Vec<pb::WrappedKey> {
            let view = sm.backend.view();
            crate::query::version(&*view, "acme/a", version)
                .unwrap()
                .envelope
                .unwrap()
                .wrapped_keys
        };
        let ok = sm
            .run(pb::command::Op::SetWraps(pb::SetWraps {
                entries: vec![
                    // Adds eu to version 1.
                    entry(1, vec![1; 12], wrap("eu", "k-eu", 5)),
                    // Replaces r's wrap of version 2 (a newer key).
                    entry(2, vec![1; 12], wrap("r", "k-r2", 6)),
                    // Another envelope's nonce: skipped.
                    entry(2, vec![9; 12], wrap("eu", "k-eu", 7)),
                    // No such version: skipped.
                    entry(7, vec![1; 12], wrap("eu", "k-eu", 8)),
                ],
            }))
            .unwrap();
        assert_eq!(ok.applied, 2);
        let v1: Vec<(String, String)> = wraps_of(&sm, 1).into_iter().map(|w| (w.region, w.key_id)).collect();
        assert_eq!(v1, [("r".to_string(), String::new()), ("eu".into(), "k-eu".into())]);
        let v2 = wraps_of(&sm, 2);
        assert_eq!(v2.len(), 1, "replaced, not added");
        assert_eq!((v2[0].key_id.as_str(), v2[0].blob[0]), ("k-r2", 6));

        // A destroyed version gets no wrap back.
        sm.run(pb::command::Op::DestroyVersion(pb::DestroyVersion {
            name: "acme/a".into(),
            version: 1,
        }))
        .unwrap();
        let ok = sm
            .run(pb::command::Op::SetWraps(pb::SetWraps {
                entries: vec![entry(1, vec![1; 12], wrap("ap", "k-ap", 5))],
            }))
            .unwrap();
        assert_eq!(ok.applied, 0);

        // Malformed entries fail the command and change nothing.
        let before = sm.snapshot();
        let mut bad = wrap("ap", "k-ap", 5);
        bad.blob.clear();
        let e = sm
            .run(pb::command::Op::SetWraps(pb::SetWraps {
                entries: vec![entry(2, vec![1; 12], wrap("ap", "k-ap", 5)), entry(2, vec![1; 12], bad)],
            }))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(sm
            .run(pb::command::Op::SetWraps(pb::SetWraps { entries: vec![] }))
            .is_err());
        // (the failed commands only advanced last_applied, which this test's store does not keep)
        assert_eq!(sm.snapshot(), before);
    }

    #[test]
    fn a_retried_request_is_answered_not_applied_twice() {
        let mut sm = Sm::new();
        let first = sm.run_as(add("acme/db", 1, "CURRENT"), "req-1").unwrap();
        let before = sm.snapshot();
        // The reply was lost; the proposer retries the very same command.
        let again = sm.run_as(add("acme/db", 1, "CURRENT"), "req-1").unwrap();
        assert_eq!((again.version, &again.etag), (1, &first.etag));
        assert_eq!(before, sm.snapshot(), "no second version, no change");
        // Still answered after other writes followed it.
        sm.run_as(add("acme/db", 2, "CURRENT"), "req-2").unwrap();
        assert_eq!(sm.run_as(add("acme/db", 1, "CURRENT"), "req-1").unwrap().version, 1);
        // Without the same id, the stale version number is a conflict, not a duplicate.
        assert_eq!(
            sm.run_as(add("acme/db", 1, "CURRENT"), "req-3").unwrap_err().code,
            ErrorCode::VersionConflict
        );
        // An alias move retried after it committed is answered too, though its CAS would now fail.
        let promote_to_1 = || {
            pb::command::Op::MoveAlias(pb::MoveAlias {
                name: "acme/db".into(),
                alias: "CURRENT".into(),
                version: 1,
                expected_version: 2,
            })
        };
        let moved = sm.run_as(promote_to_1(), "req-4").unwrap();
        let moved_at = sm.reply_index;
        let replay = sm.run_as(promote_to_1(), "req-4").unwrap();
        assert_eq!(moved.aliases, replay.aliases);
        assert_eq!(sm.reply_index, moved_at, "a replay reports where the move took effect");
    }

    /// A retried write is answered with the index of the entry that applied it, not the retry's:
    /// checkers and at-least tokens order writes by that index.
    #[test]
    fn a_replayed_request_reports_the_index_where_it_took_effect() {
        let mut sm = Sm::new();
        sm.run_as(add("acme/db", 1, "CURRENT"), "req-1").unwrap();
        let first_at = sm.reply_index;
        sm.run_as(add("acme/db", 2, "CURRENT"), "req-2").unwrap();
        let second_at = sm.reply_index;
        assert!(second_at > first_at);
        let again = sm.run_as(add("acme/db", 1, "CURRENT"), "req-1").unwrap();
        assert_eq!(again.version, 1);
        assert_eq!(sm.reply_index, first_at, "not the retry's index {}", sm.index);
        // A request applied for the first time reports its own entry.
        sm.run_as(add("acme/db", 3, "CURRENT"), "req-3").unwrap();
        assert_eq!(sm.reply_index, sm.index);
    }

    #[test]
    fn policies_and_tokens_are_stored_revoked_and_checked() {
        let mut sm = Sm::new();
        let policy = crate::test_sm::policy;
        let put = |p: pb::Policy| pb::command::Op::PutPolicy(pb::PutPolicy { policy: Some(p) });
        sm.run(put(policy("acme-read"))).unwrap();
        // Bad names and empty policies change nothing.
        for bad in [
            policy("Bad Name"),
            policy(""),
            pb::Policy {
                statements: vec![],
                ..policy("empty")
            },
        ] {
            assert_eq!(sm.run(put(bad)).unwrap_err().code, ErrorCode::InvalidArgument);
        }
        let token = crate::test_sm::token_record;
        let create = |t: pb::TokenRecord| {
            pb::command::Op::CreateToken(pb::CreateToken {
                token: Some(t),
                reply: None,
            })
        };
        sm.run(create(token("aa01", 7))).unwrap();
        assert_eq!(
            sm.run(create(token("aa01", 8))).unwrap_err().code,
            ErrorCode::AlreadyExists
        );
        assert_eq!(
            sm.run(create(token("aa02", 7))).unwrap_err().code,
            ErrorCode::AlreadyExists
        );
        for bad in [
            token("root", 9),
            token("not hex", 9),
            pb::TokenRecord {
                expires_at_ms: 10,
                ..token("aa03", 9)
            },
            pb::TokenRecord {
                token_sha256: vec![1; 31],
                ..token("aa04", 9)
            },
        ] {
            assert_eq!(sm.run(create(bad)).unwrap_err().code, ErrorCode::InvalidArgument);
        }
        {
            let view = sm.backend.view();
            let t = access_records::token_by_hash(&*view, &[7; 32]).unwrap().unwrap();
            assert_eq!((t.accessor.as_str(), t.revoked_at_ms), ("aa01", 0));
            assert!(access_records::token_by_hash(&*view, &[8; 32]).unwrap().is_none());
            assert_eq!(access_records::policies(&*view).unwrap().len(), 1);
            assert_eq!(access_records::tokens(&*view).unwrap().len(), 1);
        }
        let revoke = |a: &str| pb::command::Op::RevokeToken(pb::RevokeToken { accessor: a.into() });
        sm.run(revoke("aa01")).unwrap();
        sm.run(revoke("aa01")).unwrap(); // idempotent
        assert_eq!(sm.run(revoke("ffff")).unwrap_err().code, ErrorCode::NotFound);
        sm.run(revoke("root")).unwrap();
        let view = sm.backend.view();
        assert!(
            access_records::token_by_hash(&*view, &[7; 32])
                .unwrap()
                .unwrap()
                .revoked_at_ms
                > 0
        );
        let info = crate::query::cluster_info(&*view).unwrap().unwrap();
        assert!(info.root_revoked_at_ms > 0);
        drop(view);
        let del = |n: &str| pb::command::Op::DeletePolicy(pb::DeletePolicy { name: n.into() });
        sm.run(del("acme-read")).unwrap();
        assert_eq!(sm.run(del("acme-read")).unwrap_err().code, ErrorCode::NotFound);
        assert!(access_records::policies(&*sm.backend.view()).unwrap().is_empty());
    }

    #[test]
    fn an_update_replaces_the_metadata_only_while_the_etag_holds() {
        let mut sm = Sm::new();
        for v in 1..=4 {
            sm.put("acme/db", v, "CURRENT").unwrap();
        }
        let etag = sm.put("acme/db", 5, "CURRENT").unwrap().etag;
        let spec = pb::SecretSpec {
            owner_team: "payments".into(),
            description: "checkout database".into(),
            labels: [("env".to_string(), "prod".to_string())].into_iter().collect(),
            max_versions: 2,
            rotation: Some(pb::RotationPolicy {
                period_ms: 3_600_000,
                overlap_ms: 60_000,
                ..Default::default()
            }),
        };
        let update = |etag: &str, spec: &pb::SecretSpec| {
            pb::command::Op::UpdateSecret(pb::UpdateSecret {
                name: "acme/db".into(),
                expected_etag: etag.into(),
                spec: Some(spec.clone()),
            })
        };
        let stale = sm.run(update("00000000000000ff", &spec)).unwrap_err();
        assert_eq!(stale.code, ErrorCode::EtagMismatch);
        assert_eq!(sm.run(update("", &spec)).unwrap_err().code, ErrorCode::InvalidArgument);
        let bad = pb::SecretSpec {
            rotation: Some(pb::RotationPolicy {
                period_ms: 1000,
                overlap_ms: 2000,
                ..Default::default()
            }),
            ..spec.clone()
        };
        assert_eq!(
            sm.run(update(&etag, &bad)).unwrap_err().code,
            ErrorCode::InvalidArgument
        );
        let ok = sm.run(update(&etag, &spec)).unwrap();
        assert_ne!(ok.etag, etag);
        // The lower cap prunes in the same command; the aliased versions stay.
        assert_eq!(ok.pruned, vec![1, 2, 3]);
        let view = sm.backend.view();
        let s = crate::query::secret(&*view, "acme/db").unwrap();
        assert_eq!(
            (s.owner_team.as_str(), s.description.as_str()),
            ("payments", "checkout database")
        );
        assert_eq!(s.labels.get("env").map(String::as_str), Some("prod"));
        assert_eq!(s.rotation.as_ref().map(|r| r.period_ms), Some(3_600_000));
        assert_eq!((s.max_versions, s.etag.as_str()), (2, ok.etag.as_str()));
        drop(view);
        // The same etag again: it moved, so the second writer of a read-modify-write loses.
        assert_eq!(sm.run(update(&etag, &spec)).unwrap_err().code, ErrorCode::EtagMismatch);
        // max_versions 0 keeps the cap in force.
        let keep = pb::SecretSpec {
            max_versions: 0,
            ..spec.clone()
        };
        sm.run(update(&ok.etag, &keep)).unwrap();
        assert_eq!(
            crate::query::secret(&*sm.backend.view(), "acme/db")
                .unwrap()
                .max_versions,
            2
        );
    }

    #[test]
    fn nothing_before_bootstrap() {
        let mut sm = Sm::empty();
        assert_eq!(
            sm.put("acme/db", 1, "CURRENT").unwrap_err().code,
            ErrorCode::NotBootstrapped
        );
    }
}

//! What an applied command changed, as watchers see it (`Secrets.Watch`): at most one
//! [`pb::SecretEvent`] per command, naming the secret, the kind of change, the secret's aliases
//! after it and the versions whose values may not be served any more (`revoked`).
//!
//! Invariants: events come only from commands that changed something (a refused command or a
//! replayed request makes none), depend only on the command, its result and the state right
//! after it (deterministic, like `apply`), and never carry a value.

use std::io;

use coffer_kv::Overlay;

use crate::keys;
use crate::pb;
use crate::pb::command::Op;
use crate::pb::SecretEventKind as Kind;

/// The change `cmd` made, read from `batch` right after it applied (only rotation commands read
/// it: the step their run reached).
pub fn events(batch: &Overlay<'_>, cmd: &pb::Command, result: &pb::CommandResult) -> io::Result<Vec<pb::SecretEvent>> {
    let Some(pb::command_result::Outcome::Ok(ok)) = &result.outcome else {
        return Ok(Vec::new());
    };
    let Some(op) = &cmd.op else {
        return Ok(Vec::new());
    };
    if result.replayed {
        return Ok(Vec::new());
    }
    let mut revoked: Vec<u64> = ok.pruned.iter().chain(&ok.destroyed).copied().collect();
    let event = |name: &str, kind: Kind, version: u64| pb::SecretEvent {
        index: result.log_index,
        name: name.to_string(),
        kind: kind as i32,
        version,
        aliases: ok.aliases.clone(),
        at_ms: cmd.proposed_at_ms,
        ..Default::default()
    };
    let mut e = match op {
        Op::CreateSecret(c) => event(&c.name, Kind::Created, 0),
        Op::AddVersion(c) => event(&c.name, Kind::Put, ok.version),
        Op::MoveAlias(c) => pb::SecretEvent {
            alias: c.alias.clone(),
            ..event(&c.name, Kind::AliasMoved, c.version)
        },
        Op::SetVersionState(c) if c.state == pb::VersionState::Enabled as i32 => {
            event(&c.name, Kind::VersionEnabled, c.version)
        }
        Op::SetVersionState(c) => {
            revoked.push(c.version);
            event(&c.name, Kind::VersionDisabled, c.version)
        }
        Op::DestroyVersion(c) => {
            revoked.push(c.version);
            event(&c.name, Kind::VersionDestroyed, c.version)
        }
        Op::UpdateSecret(c) => event(&c.name, Kind::Metadata, 0),
        Op::StartRotation(c) => rotation(batch, event(&c.name, Kind::Rotation, 0))?,
        Op::AdvanceRotation(c) => {
            // Leaving OVERLAP retires (disables) the old version, which the result names.
            if c.from == pb::RotationStep::Overlap as i32 && ok.version != 0 {
                revoked.push(ok.version);
            }
            rotation(batch, event(&c.name, Kind::Rotation, ok.version))?
        }
        Op::RotationFailed(c) => pb::SecretEvent {
            rotation_failed: true,
            ..rotation(batch, event(&c.name, Kind::Rotation, 0))?
        },
        Op::RollbackRotation(c) => rotation(batch, event(&c.name, Kind::Rotation, ok.version))?,
        Op::Bootstrap(_)
        | Op::SetTokenKey(_)
        | Op::SetWraps(_)
        | Op::PutPolicy(_)
        | Op::DeletePolicy(_)
        | Op::CreateToken(_)
        | Op::RevokeToken(_)
        | Op::AnchorAudit(_) => return Ok(Vec::new()),
    };
    revoked.sort_unstable();
    revoked.dedup();
    e.revoked = revoked;
    Ok(vec![e])
}

/// `e` with the run and step its secret's rotation is at now.
fn rotation(batch: &Overlay<'_>, e: pb::SecretEvent) -> io::Result<pb::SecretEvent> {
    let Some(bytes) = batch.get(&keys::secret(&e.name))? else {
        return Ok(e);
    };
    let secret = <pb::Secret as prost::Message>::decode(&*bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("secret record: {e}")))?;
    let run = secret.rotation_run.unwrap_or_default();
    Ok(pb::SecretEvent {
        rotation_run: run.run,
        rotation_step: run.step,
        ..e
    })
}

#[cfg(test)]
mod tests {
    use super::Kind;
    use crate::pb;
    use crate::pb::command::Op;
    use crate::test_sm::add;
    use crate::test_sm::Sm;

    fn only(sm: &Sm) -> pb::SecretEvent {
        assert_eq!(sm.events.len(), 1, "{:?}", sm.events);
        sm.events[0].clone()
    }

    #[test]
    fn each_change_to_a_secret_is_one_event_with_its_index_and_aliases_after_it() {
        let mut sm = Sm::new();
        sm.run(add("acme/db", 1, "CURRENT")).unwrap();
        let put = only(&sm);
        assert_eq!(
            (put.index, put.name.as_str(), put.kind, put.version),
            (sm.index, "acme/db", Kind::Put as i32, 1)
        );
        assert_eq!(put.aliases.get("CURRENT"), Some(&1));
        sm.run(add("acme/db", 2, "")).unwrap();
        sm.run(Op::MoveAlias(pb::MoveAlias {
            name: "acme/db".into(),
            alias: "CURRENT".into(),
            version: 2,
            expected_version: 1,
        }))
        .unwrap();
        let moved = only(&sm);
        assert_eq!(
            (moved.kind, moved.alias.as_str(), moved.version),
            (Kind::AliasMoved as i32, "CURRENT", 2)
        );
        assert_eq!(moved.aliases.get("PREVIOUS"), Some(&1));
        assert!(moved.revoked.is_empty());
        sm.run(Op::SetVersionState(pb::SetVersionState {
            name: "acme/db".into(),
            version: 1,
            state: pb::VersionState::Disabled as i32,
        }))
        .unwrap();
        let disabled = only(&sm);
        assert_eq!(
            (disabled.kind, disabled.revoked.clone()),
            (Kind::VersionDisabled as i32, vec![1])
        );
        sm.run(Op::DestroyVersion(pb::DestroyVersion {
            name: "acme/db".into(),
            version: 1,
        }))
        .unwrap();
        assert_eq!(only(&sm).revoked, vec![1]);
        assert_eq!(only(&sm).kind, Kind::VersionDestroyed as i32);
    }

    #[test]
    fn refused_and_replayed_commands_and_access_records_make_no_event() {
        let mut sm = Sm::new();
        sm.run_as(add("acme/db", 1, "CURRENT"), "req-1").unwrap();
        assert_eq!(sm.events.len(), 1);
        // The same request again: answered from the request table, nothing changed.
        sm.run_as(add("acme/db", 1, "CURRENT"), "req-1").unwrap();
        assert!(sm.replayed);
        assert!(sm.events.is_empty(), "{:?}", sm.events);
        // A version that is not next: refused.
        assert!(sm.run(add("acme/db", 7, "")).is_err());
        assert!(sm.events.is_empty());
        sm.run(Op::DeletePolicy(pb::DeletePolicy { name: "none".into() })).ok();
        assert!(sm.events.is_empty());
    }

    #[test]
    fn a_version_pushed_out_by_the_cap_is_revoked_by_the_put_that_pushed_it() {
        let mut sm = Sm::new();
        sm.run(Op::CreateSecret(pb::CreateSecret {
            name: "acme/capped".into(),
            spec: Some(pb::SecretSpec {
                max_versions: 2,
                ..Default::default()
            }),
        }))
        .unwrap();
        assert_eq!(only(&sm).kind, Kind::Created as i32);
        sm.run(add("acme/capped", 1, "")).unwrap();
        sm.run(add("acme/capped", 2, "CURRENT")).unwrap();
        sm.run(add("acme/capped", 3, "CURRENT")).unwrap();
        let put = only(&sm);
        assert_eq!(put.version, 3);
        assert_eq!(put.revoked, vec![1], "version 1 is neither newest-two nor aliased");
    }

    #[test]
    fn a_rotation_step_names_its_run_and_the_step_reached_and_retiring_revokes_the_old_version() {
        let mut sm = Sm::new();
        sm.run(Op::CreateSecret(pb::CreateSecret {
            name: "acme/rot".into(),
            spec: Some(pb::SecretSpec {
                rotation: Some(pb::RotationPolicy {
                    period_ms: 10_000,
                    overlap_ms: 1_000,
                    strategy: pb::RotationStrategy::Generate as i32,
                    retention_ms: 2_000,
                    retire_deadline_ms: 5_000,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }))
        .unwrap();
        sm.put("acme/rot", 1, "CURRENT").unwrap();
        sm.run(Op::StartRotation(pb::StartRotation {
            name: "acme/rot".into(),
            run: 1,
        }))
        .unwrap();
        let started = only(&sm);
        assert_eq!(
            (started.kind, started.rotation_run, started.rotation_step),
            (Kind::Rotation as i32, 1, pb::RotationStep::CreatePending as i32)
        );
        sm.run(Op::RotationFailed(pb::RotationFailed {
            name: "acme/rot".into(),
            run: 1,
            step: pb::RotationStep::CreatePending as i32,
            error: "kms down".into(),
        }))
        .unwrap();
        assert!(only(&sm).rotation_failed);
        let mut pending = add("acme/rot", 2, "PENDING");
        if let Op::AddVersion(a) = &mut pending {
            a.rotation_run = 1;
        }
        sm.run(pending).unwrap();
        sm.run(Op::AdvanceRotation(pb::AdvanceRotation {
            name: "acme/rot".into(),
            run: 1,
            from: pb::RotationStep::Promote as i32,
            ..Default::default()
        }))
        .unwrap();
        let promoted = only(&sm);
        assert_eq!(promoted.rotation_step, pb::RotationStep::Overlap as i32);
        assert_eq!(promoted.aliases.get("CURRENT"), Some(&2));
        assert!(
            promoted.revoked.is_empty(),
            "PREVIOUS stays readable through the overlap"
        );
        sm.clock_ms += 6_000;
        sm.run(Op::AdvanceRotation(pb::AdvanceRotation {
            name: "acme/rot".into(),
            run: 1,
            from: pb::RotationStep::Overlap as i32,
            forced: true,
            ..Default::default()
        }))
        .unwrap();
        let retired = only(&sm);
        assert_eq!(
            (retired.rotation_step, retired.revoked.clone()),
            (pb::RotationStep::Retired as i32, vec![1])
        );
    }
}

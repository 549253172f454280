//! A put: a new version of a secret's value, sealed on this node and proposed to the leader.
//!
//! The version number is part of the sealing (it is in the AAD), so a put guesses the next
//! number from this replica and the leader refuses a stale guess with the number it expects
//! (`VERSION_CONFLICT`). The put then re-seals for that number, and after a first lost race
//! also for a few numbers after it, so a writer far from the leader is not starved by one near
//! it. Each attempt has its own request id (derived from the request's), so every attempt is
//! applied at most once and a retried request is answered with its first outcome.

use super::write::Committed;
use super::Service;
use crate::crypto::SecretValue;
use crate::error::ApiError;
use crate::pb;
use crate::pb::command::Op;

/// How many times a put re-seals for a newer version number after losing a race.
pub const MAX_VERSION_RACES: usize = 8;

/// A new version of a secret's value, as the handler decoded and checked it.
pub struct PutValue {
    pub name: String,
    pub value: SecretValue,
    /// The alias to point at the new version (normalized; empty for none).
    pub alias: String,
    /// Refuse instead of creating the secret when it does not exist.
    pub must_exist: bool,
    /// The rotation run this value is the new version of (0 = none; see `AddVersion`).
    pub rotation_run: u64,
}

impl Service {
    /// Seals and proposes `put` until it lands on a version number: at most
    /// [`MAX_VERSION_RACES`] attempts, then `version_race`.
    /// On behalf of `principal`, under `request_id` (each attempt under one derived from it).
    pub async fn put_value(&self, principal: &str, request_id: &str, put: PutValue) -> Result<Committed, ApiError> {
        let PutValue {
            name,
            value,
            alias,
            must_exist,
            rotation_run,
        } = put;
        // This replica's guess; the leader checks it, and a lost race says the right one.
        let mut version = match self.secret_here(&name) {
            Ok(s) => s.next_version,
            Err(ApiError::NotFound(_)) => 1,
            Err(e) => return Err(e),
        };
        if self.faults.take_lost_write() {
            // Test hook (crate::drill::faults): answered as applied, never proposed.
            tracing::warn!(name = %name, version, "drill test hook: a write acknowledged and dropped");
            return Ok(Committed {
                ok: pb::CommandOk {
                    version,
                    ..Default::default()
                },
                index: self.raft.reader().applied_index(),
                replayed: false,
            });
        }
        let sealer = self.vault.prepare(&name).await?;
        // The same for every attempt of this request; none before the token key exists.
        let value_mac = match self.token_key().await {
            Ok(Some(k)) => k.value_mac(&name, value.expose()),
            _ => Vec::new(),
        };
        for attempt in 0..MAX_VERSION_RACES {
            let seal = |v: u64| sealer.seal(&value, v).map_err(|e| ApiError::Unavailable(e.to_string()));
            let envelope = seal(version)?;
            // After a lost race, also seal for the next few versions (the others' writes land
            // while ours travels to the leader), so a far writer is not starved by a near one.
            let spare = match attempt {
                0 => 0,
                1 => 3,
                _ => 7,
            };
            let also_for = (1..=spare)
                .map(|k| {
                    seal(version + k).map(|e| pb::SealedFor {
                        version: version + k,
                        nonce: e.nonce,
                        ciphertext: e.ciphertext,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            // Which nonce sealed which version, to cache the DEK of the one that lands.
            let nonces: Vec<(u64, Vec<u8>)> = std::iter::once((version, envelope.nonce.clone()))
                .chain(also_for.iter().map(|s| (s.version, s.nonce.clone())))
                .collect();
            let op = Op::AddVersion(pb::AddVersion {
                name: name.clone(),
                version,
                envelope: Some(envelope),
                crc32c: 0,
                size: value.len() as u32,
                alias: alias.clone(),
                create_if_missing: (!must_exist).then(pb::SecretSpec::default),
                expires_at_ms: 0,
                also_for,
                value_mac: value_mac.clone(),
                rotation_run,
            });
            let id = crate::request_ids::attempt(request_id, attempt);
            match self.propose_as(principal, &id, op).await? {
                Ok(c) => {
                    // A replay answers for an earlier attempt's sealing, not this one's DEK.
                    if !c.replayed {
                        if let Some((v, nonce)) = nonces.iter().find(|(v, _)| *v == c.ok.version) {
                            self.vault.remember(&sealer, *v, nonce);
                        }
                    }
                    return Ok(c);
                }
                // Lost a race for the version number: re-seal for the one the leader expects.
                Err(e) if e.code == pb::ErrorCode::VersionConflict => version = e.next_version,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::VersionRace(format!(
            "{name} is being written concurrently; gave up after {MAX_VERSION_RACES} version races, retry"
        )))
    }
}

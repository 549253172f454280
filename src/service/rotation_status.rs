//! Where every secret's rotation stands, from this replica (`coffer rotation status`): the
//! rotation queue names every secret with a policy; each is read and classified
//! ([`rotation::standing`]).

use coffer_model::query;
use coffer_model::rotation;
use coffer_model::rotation_policy;

use super::Service;
use crate::error::ApiError;
use crate::pb;

/// Secrets one status lists at most (the rest are reported as truncated).
pub const MAX_STATUS_SECRETS: usize = 10_000;

pub struct StatusReport {
    /// Sorted by name.
    pub entries: Vec<pb::RotationStatusEntry>,
    pub truncated: bool,
}

impl Service {
    /// The secrets under `prefix` with a rotation policy (of `owner_team` if given), only the
    /// past-due ones with `due`, only the failing ones with `failed`.
    pub fn rotation_status(
        &self,
        prefix: &str,
        owner_team: &str,
        due: bool,
        failed: bool,
    ) -> Result<StatusReport, ApiError> {
        self.check_member()?;
        let now = crate::time::now_ms();
        let view = self.raft.reader().view();
        let (names, truncated) = query::rotating_secrets(&*view, MAX_STATUS_SECRETS)?;
        let mut entries = Vec::new();
        for name in names.into_iter().filter(|n| n.starts_with(prefix)) {
            let secret = query::secret(&*view, &name)?;
            if !owner_team.is_empty() && secret.owner_team != owner_team {
                continue;
            }
            let (Some(standing), Some(policy)) = (rotation::standing(&secret, now), secret.rotation.as_ref()) else {
                continue;
            };
            let due_at_ms = rotation::due_at(&secret).unwrap_or(0);
            if due && now < due_at_ms {
                continue;
            }
            if failed && standing != rotation::Standing::Failed {
                continue;
            }
            entries.push(pb::RotationStatusEntry {
                owner_team: secret.owner_team.clone(),
                strategy: rotation_policy::strategy_name(rotation_policy::strategy(policy)).into(),
                standing: standing.name().into(),
                run: secret.rotation_run.clone(),
                due_at_ms,
                current_version: secret.aliases.get(coffer_model::names::CURRENT).copied().unwrap_or(0),
                name,
            });
        }
        Ok(StatusReport { entries, truncated })
    }
}

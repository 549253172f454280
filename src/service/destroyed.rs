//! Every node drops the data key of a version as soon as it applies that version's destroy, or
//! the command that pruned it under `max_versions` (not only the node that served the request),
//! and all of them after a snapshot install or when it fell behind the events, since it cannot
//! tell then which versions went.

use std::sync::Arc;

use coffer_raft::shred_signals::ShredEvent;
use tokio::sync::broadcast::error::RecvError;

use super::Service;
use crate::pb;

/// Forgets the destroyed version and every version `max_versions` pruned.
fn forget_applied(service: &Service, cmd: &pb::Command, result: &pb::CommandResult) {
    use pb::command::Op;
    let name = match &cmd.op {
        Some(Op::DestroyVersion(d)) => {
            service.vault.forget(&d.name, d.version);
            &d.name
        }
        Some(Op::AddVersion(a)) => &a.name,
        Some(Op::MoveAlias(m)) => &m.name,
        Some(Op::UpdateSecret(u)) => &u.name,
        Some(Op::AdvanceRotation(r)) => &r.name,
        Some(Op::RollbackRotation(r)) => &r.name,
        _ => return,
    };
    if let Some(pb::command_result::Outcome::Ok(ok)) = &result.outcome {
        for v in ok.pruned.iter().chain(&ok.destroyed) {
            service.vault.forget(name, *v);
        }
    }
}

/// Follows this node's shred events until `stop` is set or Raft goes away.
pub async fn forget_destroyed_keys(service: Arc<Service>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut events = service.raft.reader().shredding().events();
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = stop.wait_for(|s| *s) => return,
        };
        match event {
            Ok(ShredEvent::Applied { cmd, result, .. }) => forget_applied(&service, &cmd, &result),
            Ok(ShredEvent::Installed { .. }) | Err(RecvError::Lagged(_)) => service.vault.forget_all(),
            Err(RecvError::Closed) => return,
        }
    }
}

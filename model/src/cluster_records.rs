//! Commands on the cluster record (`m/cluster`): bootstrap, the token-signing key, and the
//! per-region key wraps a rewrap adds to secret versions and to the token key.

use prost::Message;

use crate::error::decode;
use crate::error::fail;
use crate::error::ModelError;
use crate::error::Result;
use crate::keys;
use crate::names;
use crate::pb;
use crate::pb::ErrorCode;
use coffer_kv::Txn;

pub(crate) fn bootstrap(tx: &mut Txn<'_, '_>, b: &pb::Bootstrap) -> Result<pb::CommandOk> {
    let Some(info) = &b.cluster else {
        return fail(ErrorCode::InvalidArgument, "bootstrap without cluster info");
    };
    if let Some(existing) = tx.get(keys::CLUSTER)? {
        let existing: pb::ClusterInfo = decode(&existing, "cluster")?;
        // Retrying the same bootstrap is harmless; a different one is refused.
        if existing.cluster_id == info.cluster_id {
            return Ok(pb::CommandOk::default());
        }
        return fail(ErrorCode::AlreadyExists, "the cluster is already bootstrapped");
    }
    if info.cluster_id.is_empty() || info.root_token_sha256.len() != 32 {
        return fail(
            ErrorCode::InvalidArgument,
            "bootstrap needs a cluster id and a root token hash",
        );
    }
    tx.put(keys::CLUSTER.to_vec(), info.encode_to_vec());
    Ok(pb::CommandOk::default())
}

/// Sets the cluster's token key once; later proposals (from other nodes racing) are no-ops.
pub(crate) fn set_token_key(tx: &mut Txn<'_, '_>, k: &pb::SetTokenKey) -> Result<pb::CommandOk> {
    let Some(bytes) = tx.get(keys::CLUSTER)? else {
        return fail(ErrorCode::NotBootstrapped, "the cluster is not bootstrapped yet");
    };
    let mut info: pb::ClusterInfo = decode(&bytes, "cluster")?;
    if info.token_key.is_some() {
        return Ok(pb::CommandOk::default());
    }
    match &k.key {
        Some(e) if !e.ciphertext.is_empty() && !e.wrapped_keys.is_empty() => info.token_key = Some(e.clone()),
        _ => return fail(ErrorCode::InvalidArgument, "a token key needs a sealed envelope"),
    }
    tx.put(keys::CLUSTER.to_vec(), info.encode_to_vec());
    Ok(pb::CommandOk::default())
}

/// Most entries one SetWraps may carry.
pub const MAX_WRAPS_PER_COMMAND: usize = 1024;

/// Puts each entry's wrap in place of its region's wrap (or beside the others when the region
/// has none). An entry whose envelope is gone (destroyed) or is another one (nonce differs) is
/// skipped; a malformed entry fails the whole command.
pub(crate) fn set_wraps(tx: &mut Txn<'_, '_>, w: &pb::SetWraps) -> Result<pb::CommandOk> {
    if w.entries.is_empty() || w.entries.len() > MAX_WRAPS_PER_COMMAND {
        return fail(
            ErrorCode::InvalidArgument,
            format!("SetWraps carries 1 to {MAX_WRAPS_PER_COMMAND} entries"),
        );
    }
    for e in &w.entries {
        match &e.wrap {
            Some(k) if !k.region.is_empty() && !k.provider.is_empty() && !k.blob.is_empty() => {}
            _ => {
                return fail(
                    ErrorCode::InvalidArgument,
                    "a rewrap entry needs a wrap with region, provider and blob",
                )
            }
        }
        if !e.token_key {
            names::validate_name(&e.name).map_err(ModelError::from)?;
        }
    }
    fn place(env: &mut pb::Envelope, nonce: &[u8], wrap: &pb::WrappedKey) -> bool {
        if env.nonce != nonce {
            return false;
        }
        match env.wrapped_keys.iter_mut().find(|k| k.region == wrap.region) {
            Some(k) => *k = wrap.clone(),
            None => env.wrapped_keys.push(wrap.clone()),
        }
        true
    }
    let mut applied = 0u32;
    for e in &w.entries {
        let wrap = e.wrap.as_ref().expect("checked above");
        if e.token_key {
            let Some(bytes) = tx.get(keys::CLUSTER)? else { continue };
            let mut info: pb::ClusterInfo = decode(&bytes, "cluster")?;
            if info.token_key.as_mut().is_some_and(|env| place(env, &e.nonce, wrap)) {
                tx.put(keys::CLUSTER.to_vec(), info.encode_to_vec());
                applied += 1;
            }
            continue;
        }
        let key = keys::version(&e.name, e.version);
        let Some(bytes) = tx.get(&key)? else { continue };
        let mut v: pb::SecretVersion = decode(&bytes, "version")?;
        if v.state == pb::VersionState::Destroyed as i32 {
            continue;
        }
        if v.envelope.as_mut().is_some_and(|env| place(env, &e.nonce, wrap)) {
            tx.put(key, v.encode_to_vec());
            applied += 1;
        }
    }
    Ok(pb::CommandOk {
        applied,
        ..Default::default()
    })
}

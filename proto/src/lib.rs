//! Protobuf messages and gRPC services of Coffer: the public API, the peer (Raft) RPC and the
//! durable records written to the Raft log, RocksDB and snapshots.

#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]

use std::fmt;

/// Everything lives in one protobuf package, `coffer.v1`.
pub mod v1 {
    tonic::include_proto!("coffer.v1");
}

pub use v1::*;

// openraft requires `Display` on application data. It names the operation and the secret, never
// the envelope.
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use command::Op;
        match &self.op {
            Some(Op::Bootstrap(_)) => write!(f, "bootstrap"),
            Some(Op::CreateSecret(c)) => write!(f, "create_secret({})", c.name),
            Some(Op::AddVersion(c)) => write!(f, "add_version({}, v{})", c.name, c.version),
            Some(Op::MoveAlias(c)) => {
                write!(f, "move_alias({}, {} -> v{})", c.name, c.alias, c.version)
            }
            Some(Op::SetVersionState(c)) => {
                write!(f, "set_version_state({}, v{}, {})", c.name, c.version, c.state)
            }
            Some(Op::DestroyVersion(c)) => write!(f, "destroy_version({}, v{})", c.name, c.version),
            Some(Op::SetTokenKey(_)) => write!(f, "set_token_key"),
            Some(Op::SetWraps(w)) => write!(f, "set_wraps({} entries)", w.entries.len()),
            Some(Op::PutPolicy(p)) => write!(f, "put_policy({})", p.policy.as_ref().map_or("", |p| &p.name)),
            Some(Op::DeletePolicy(p)) => write!(f, "delete_policy({})", p.name),
            Some(Op::CreateToken(t)) => {
                write!(f, "create_token({})", t.token.as_ref().map_or("", |t| &t.accessor))
            }
            Some(Op::RevokeToken(t)) => write!(f, "revoke_token({})", t.accessor),
            Some(Op::AnchorAudit(a)) => write!(f, "anchor_audit(node {}, record {})", a.node_id, a.seq),
            Some(Op::UpdateSecret(c)) => write!(f, "update_secret({}, etag {})", c.name, c.expected_etag),
            Some(Op::StartRotation(c)) => write!(f, "start_rotation({}, run {})", c.name, c.run),
            Some(Op::AdvanceRotation(c)) => {
                write!(f, "advance_rotation({}, run {} from {})", c.name, c.run, c.from)
            }
            Some(Op::RotationFailed(c)) => {
                write!(f, "rotation_failed({}, run {} at {})", c.name, c.run, c.step)
            }
            Some(Op::RollbackRotation(c)) => {
                write!(f, "rollback_rotation({}, expect v{})", c.name, c.expected_current)
            }
            None => write!(f, "empty"),
        }
    }
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({}@{})", self.name, self.id, self.region)
    }
}

/// Writes `[redacted N bytes]` in place of a secret byte string.
struct Redacted(usize);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[redacted {} bytes]", self.0)
    }
}

impl fmt::Debug for PutSecretValueRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutSecretValueRequest")
            .field("name", &self.name)
            .field("value", &Redacted(self.value.len()))
            .field("alias", &self.alias)
            .field("must_exist", &self.must_exist)
            .field("rotation_run", &self.rotation_run)
            .field("rotation_token", &Redacted(self.rotation_token.len()))
            .finish()
    }
}

impl fmt::Debug for GetSecretValueResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetSecretValueResponse")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("value", &Redacted(self.value.len()))
            .field("aliases", &self.aliases)
            .field("read", &self.read)
            .field("created_at_ms", &self.created_at_ms)
            .finish()
    }
}

impl fmt::Debug for CreateTokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateTokenResponse")
            .field("token", &Redacted(self.token.len()))
            .field("accessor", &self.accessor)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("principal", &self.principal)
            .finish()
    }
}

impl fmt::Debug for LocalKeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKeyVersion")
            .field("version", &self.version)
            .field("key", &Redacted(self.key.len()))
            .field("created_at_ms", &self.created_at_ms)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_values_or_keys() {
        let put = PutSecretValueRequest {
            name: "acme/x".into(),
            value: b"hunter2-fake-value".to_vec(),
            rotation_token: "crt1_fake-token-for-tests".into(),
            ..Default::default()
        };
        let get = GetSecretValueResponse {
            value: b"hunter2-fake-value".to_vec(),
            ..Default::default()
        };
        let key = LocalKeyVersion {
            version: 1,
            key: b"fake-key-material-32-bytes-long!".to_vec(),
            created_at_ms: 0,
        };
        for s in [
            format!("{put:?}"),
            format!("{get:?}"),
            format!("{key:?}"),
            format!(
                "{:?}",
                LocalKeyring {
                    versions: vec![key.clone()],
                    ..Default::default()
                }
            ),
        ] {
            assert!(!s.contains("hunter2"), "{s}");
            assert!(!s.contains("fake-key"), "{s}");
            assert!(!s.contains("fake-token"), "{s}");
            assert!(s.contains("redacted"), "{s}");
        }
    }
}

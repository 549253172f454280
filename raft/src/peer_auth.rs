//! Membership proof for peer RPCs over plaintext transport.
//!
//! With TLS, a peer proves it is a node with its certificate. Without TLS (loopback only: a
//! node refuses to start plaintext on any other address), every member holds the cluster's
//! peer key, a 32-byte secret in `network.peer_key_file`, and every peer request carries
//! [`PEER_AUTH_HEADER`]: the sender's node id and an HMAC-SHA256 of it under that key. The key
//! itself never crosses the wire. A caller without the key (any local user who can reach the
//! port) cannot make a proof, so it is refused before any handler runs.
//!
//! Threat model: reading loopback traffic to replay a proof takes root on the host, which
//! already reads the key file. Anything beyond one host uses TLS.

use std::path::Path;

use hmac::Hmac;
use hmac::Mac;
use sha2::Sha256;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::Request;
use tonic::Status;

use crate::NodeId;

/// The request header that carries a peer's proof: `<node id>.<hex HMAC>`.
pub const PEER_AUTH_HEADER: &str = "x-coffer-peer-auth";

/// What the HMAC covers besides the node id, so a proof is good for nothing else.
const DOMAIN: &[u8] = b"coffer peer auth v1\0";

/// Length of the key in bytes (64 hex characters in the file).
pub const PEER_KEY_BYTES: usize = 32;

/// A cluster's peer key. Never printed: `Debug` says only that it is redacted.
#[derive(Clone)]
pub struct ClusterKey([u8; PEER_KEY_BYTES]);

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(<redacted>)")
    }
}

impl Drop for ClusterKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// Why a key file or a proof was refused (never contains key material).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerAuthError {
    #[error("cannot read the peer key file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error(
        "the peer key file {path} is readable by group or others (mode {mode:o}); \
         run chmod 600 on it"
    )]
    TooOpen { path: String, mode: u32 },
    #[error("the peer key file {path} must hold 64 hex characters (32 random bytes)")]
    Malformed { path: String },
    #[error("peer RPCs without TLS need a membership proof ({PEER_AUTH_HEADER}); this request has none")]
    Missing,
    #[error("the membership proof of this peer request is not valid for this cluster")]
    Invalid,
}

impl ClusterKey {
    pub fn from_bytes(bytes: [u8; PEER_KEY_BYTES]) -> Self {
        Self(bytes)
    }

    /// Parses the file's text: 64 hex characters, surrounding whitespace ignored.
    pub fn from_hex(text: &str, path: &str) -> Result<Self, PeerAuthError> {
        let malformed = || PeerAuthError::Malformed { path: path.to_string() };
        let text = text.trim();
        if text.len() != 2 * PEER_KEY_BYTES {
            return Err(malformed());
        }
        let mut key = [0u8; PEER_KEY_BYTES];
        hex::decode_to_slice(text, &mut key).map_err(|_| malformed())?;
        Ok(Self(key))
    }

    /// Reads a key file; refuses one that group or others may read.
    pub fn load(path: &Path) -> Result<Self, PeerAuthError> {
        use std::os::unix::fs::PermissionsExt;
        let shown = path.display().to_string();
        let unreadable = |e: std::io::Error| PeerAuthError::Unreadable {
            path: shown.clone(),
            reason: e.to_string(),
        };
        let meta = std::fs::metadata(path).map_err(unreadable)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(PeerAuthError::TooOpen { path: shown, mode });
        }
        // Bounded: a key file is 64 characters; never read an arbitrary file whole.
        let text = read_at_most(path, 256).map_err(unreadable)?;
        Self::from_hex(&text, &shown)
    }

    fn mac(&self, id: NodeId) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        m.update(DOMAIN);
        m.update(&id.to_be_bytes());
        m
    }

    /// The header value node `id` sends.
    pub fn proof(&self, id: NodeId) -> String {
        format!("{id}.{}", hex::encode(self.mac(id).finalize().into_bytes()))
    }

    /// The node id a header value proves, compared in constant time.
    pub fn verify(&self, header: Option<&str>) -> Result<NodeId, PeerAuthError> {
        let header = header.ok_or(PeerAuthError::Missing)?;
        let (id, tag) = header.split_once('.').ok_or(PeerAuthError::Invalid)?;
        let id: NodeId = id.parse().map_err(|_| PeerAuthError::Invalid)?;
        let mut tag_bytes = [0u8; 32];
        hex::decode_to_slice(tag, &mut tag_bytes).map_err(|_| PeerAuthError::Invalid)?;
        self.mac(id)
            .verify_slice(&tag_bytes)
            .map_err(|_| PeerAuthError::Invalid)?;
        Ok(id)
    }
}

fn read_at_most(path: &Path, limit: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?.take(limit).read_to_string(&mut text)?;
    Ok(text)
}

/// What a node attaches to each peer request it sends: a proof under the cluster key, or
/// nothing when the transport (mutual TLS) proves membership itself.
#[derive(Clone, Debug, Default)]
pub struct PeerCredential(Option<AsciiMetadataValue>);

impl PeerCredential {
    /// Nothing to attach: the connection's client certificate is the proof.
    pub fn none() -> Self {
        Self(None)
    }

    /// Node `id`'s proof under `key`.
    pub fn cluster_key(key: &ClusterKey, id: NodeId) -> Self {
        let value = key.proof(id).parse().expect("digits, a dot and hex are ASCII");
        Self(Some(value))
    }
}

impl Interceptor for PeerCredential {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert(PEER_AUTH_HEADER, v.clone());
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> ClusterKey {
        ClusterKey::from_bytes([b; PEER_KEY_BYTES])
    }

    #[test]
    fn a_proof_verifies_under_its_key_only_and_names_its_sender() {
        let k = key(7);
        assert_eq!(k.verify(Some(&k.proof(3))), Ok(3));
        assert_eq!(key(8).verify(Some(&k.proof(3))), Err(PeerAuthError::Invalid));
        // Another node's id with this node's tag.
        let forged = k.proof(3).replacen("3.", "4.", 1);
        assert_eq!(k.verify(Some(&forged)), Err(PeerAuthError::Invalid));
        for bad in ["", "3", "3.", "x.00", "3.zz", "3.0011", &"3.".repeat(200)] {
            assert_eq!(k.verify(Some(bad)), Err(PeerAuthError::Invalid), "{bad:?}");
        }
        assert_eq!(k.verify(None), Err(PeerAuthError::Missing));
    }

    #[test]
    fn a_key_file_must_be_private_and_hold_64_hex_characters() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("peer.key");
        let hex64 = "ab".repeat(32);
        std::fs::write(&p, format!("{hex64}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            ClusterKey::load(&p),
            Err(PeerAuthError::TooOpen { mode: 0o644, .. })
        ));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let k = ClusterKey::load(&p).unwrap();
        assert_eq!(k.verify(Some(&ClusterKey::from_bytes([0xab; 32]).proof(1))), Ok(1));
        for bad in ["ab", &"zz".repeat(32), &"ab".repeat(33)] {
            std::fs::write(&p, bad).unwrap();
            assert!(
                matches!(ClusterKey::load(&p), Err(PeerAuthError::Malformed { .. })),
                "{bad}"
            );
        }
        let missing = ClusterKey::load(&dir.path().join("none")).unwrap_err();
        assert!(matches!(missing, PeerAuthError::Unreadable { .. }), "{missing}");
        assert_eq!(format!("{k:?}"), "ClusterKey(<redacted>)");
    }

    #[test]
    fn the_credential_puts_the_proof_in_the_header() {
        let k = key(1);
        let mut c = PeerCredential::cluster_key(&k, 2);
        let req = c.call(Request::new(())).unwrap();
        let v = req.metadata().get(PEER_AUTH_HEADER).unwrap().to_str().unwrap();
        assert_eq!(k.verify(Some(v)), Ok(2));
        let req = PeerCredential::none().call(Request::new(())).unwrap();
        assert!(req.metadata().get(PEER_AUTH_HEADER).is_none());
    }
}

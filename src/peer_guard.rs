//! Who may call the peer (Raft) port: only cluster members, in every transport mode.
//!
//! - Mutual TLS: a node certificate signed by the cluster CA ([`NodeCertGuard`]).
//! - Plaintext (loopback only): a proof under the cluster's peer key on every request
//!   ([`coffer_raft::peer_auth`]).
//!
//! There is no open mode: a node without TLS and without a peer key does not start.

use std::sync::Arc;

use coffer_raft::peer_auth::ClusterKey;
use coffer_raft::peer_auth::PeerAuthError;
use coffer_raft::peer_auth::PEER_AUTH_HEADER;
use tonic::service::Interceptor;
use tonic::Request;
use tonic::Status;

use crate::tls::NodeCertGuard;
use crate::tls::PeerNode;

/// How a node's peer port authenticates its callers.
#[derive(Clone)]
pub enum PeerSecurity {
    /// Mutual TLS: the server config, which requires a client certificate from the CA.
    Tls(tonic::transport::ServerTlsConfig),
    /// Plaintext on loopback: every request proves membership with the cluster key.
    ClusterKey(Arc<ClusterKey>),
}

impl std::fmt::Debug for PeerSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerSecurity::Tls(_) => f.write_str("PeerSecurity::Tls"),
            PeerSecurity::ClusterKey(_) => f.write_str("PeerSecurity::ClusterKey(<redacted>)"),
        }
    }
}

/// The interceptor in front of every peer RPC.
#[derive(Clone, Debug)]
pub enum PeerGuard {
    NodeCerts(NodeCertGuard),
    ClusterKey(Arc<ClusterKey>),
}

impl PeerGuard {
    pub fn for_security(s: &PeerSecurity) -> Self {
        match s {
            PeerSecurity::Tls(_) => PeerGuard::NodeCerts(NodeCertGuard),
            PeerSecurity::ClusterKey(k) => PeerGuard::ClusterKey(k.clone()),
        }
    }
}

impl Interceptor for PeerGuard {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let key = match self {
            PeerGuard::NodeCerts(g) => return g.call(req),
            PeerGuard::ClusterKey(k) => k,
        };
        let header = req.metadata().get(PEER_AUTH_HEADER).and_then(|v| v.to_str().ok());
        match key.verify(header) {
            Ok(id) => {
                req.extensions_mut().insert(PeerNode(format!("node {id}")));
                Ok(req)
            }
            Err(e) => {
                let reason = match e {
                    PeerAuthError::Missing => "no_proof",
                    _ => "bad_proof",
                };
                metrics::counter!("coffer_peer_rpc_refused_total", "reason" => reason).increment(1);
                tracing::warn!("refused a peer RPC: {e}");
                Err(Status::unauthenticated(e.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_peers_are_admitted_with_a_proof_under_the_cluster_key_only() {
        let key = Arc::new(ClusterKey::from_bytes([5; 32]));
        let mut guard = PeerGuard::for_security(&PeerSecurity::ClusterKey(key.clone()));
        let with = |v: Option<String>| {
            let mut req = Request::new(());
            if let Some(v) = v {
                req.metadata_mut().insert(PEER_AUTH_HEADER, v.parse().unwrap());
            }
            req
        };
        let admitted = guard.call(with(Some(key.proof(2)))).unwrap();
        assert_eq!(
            admitted.extensions().get::<PeerNode>(),
            Some(&PeerNode("node 2".into()))
        );
        let other = ClusterKey::from_bytes([6; 32]);
        for (req, needle) in [
            (with(None), "has none"),
            (with(Some(other.proof(2))), "not valid"),
            (with(Some("2.".to_string())), "not valid"),
        ] {
            let s = guard.call(req).unwrap_err();
            assert_eq!(s.code(), tonic::Code::Unauthenticated);
            assert!(s.message().contains(needle), "{}", s.message());
        }
        assert!(!format!("{guard:?}").contains("5, 5"), "{guard:?}");
    }
}

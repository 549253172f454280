//! What a fence refuses on the peer port: every call, whoever sends it, so the cluster sees a
//! fenced node as gone (outbound calls are refused by `coffer_raft::network::PeerChannels`).
//! Clients are refused by the service's seam entry (`Service::grant*`), which covers gRPC and
//! HTTP alike; the drill call itself and health stay open.

use std::sync::Arc;

use coffer_raft::fence::Fence;
use tonic::service::Interceptor;
use tonic::Request;
use tonic::Status;

use crate::peer_guard::PeerGuard;

/// The peer port's interceptor: the fence first, then the membership proof.
#[derive(Clone, Debug)]
pub struct FencedPeerGuard {
    pub fence: Arc<Fence>,
    pub guard: PeerGuard,
}

impl Interceptor for FencedPeerGuard {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(why) = self.fence.refusal() {
            metrics::counter!("coffer_drill_refused_total", "port" => "peer").increment(1);
            return Err(Status::unavailable(why));
        }
        self.guard.call(req)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_fenced_node_refuses_every_peer_call_even_a_proven_one() {
        let key = Arc::new(coffer_raft::peer_auth::ClusterKey::from_bytes([7; 32]));
        let fence = Arc::new(Fence::default());
        let mut g = FencedPeerGuard {
            fence: fence.clone(),
            guard: PeerGuard::ClusterKey(key.clone()),
        };
        let proven = || {
            let mut cred = coffer_raft::peer_auth::PeerCredential::cluster_key(&key, 2);
            cred.call(Request::new(())).expect("a credential only adds a header")
        };
        assert!(g.call(proven()).is_ok(), "no fence: a member's call passes");
        fence.raise("d", Duration::from_secs(30));
        let e = g.call(proven()).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable);
        assert!(e.message().contains("drill d in progress"), "{}", e.message());
        fence.lift(None);
        assert!(g.call(proven()).is_ok(), "lifted: calls pass again");
    }
}

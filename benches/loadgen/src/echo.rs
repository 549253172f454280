//! The bare tonic echo service: the same request shape as a secret read, answered with a
//! payload of the asked size from memory. Runs in its own process (`coffer-loadgen echo-server`)
//! like a Coffer node, so the load generator never shares a runtime with what it measures.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::RwLock;

use tonic::Request;
use tonic::Response;
use tonic::Status;

pub mod pb {
    tonic::include_proto!("coffer.bench.v1");
}

/// Largest payload the echo answers with (the benchmarks use 256 B and 4 KiB).
const MAX_SIZE: u32 = 1 << 20;

struct Echo {
    payload: Vec<u8>,
    /// Held shared by every request; a holder of the write side stalls the whole server (tests
    /// use it to show what the open loop charges for a stall).
    stall: Arc<RwLock<()>>,
}

#[tonic::async_trait]
impl pb::echo_server::Echo for Echo {
    async fn get(&self, req: Request<pb::EchoRequest>) -> Result<Response<pb::EchoResponse>, Status> {
        let _running = self.stall.read().await;
        let req = req.into_inner();
        if req.size > MAX_SIZE {
            return Err(Status::invalid_argument(format!(
                "size {} exceeds {MAX_SIZE}",
                req.size
            )));
        }
        Ok(Response::new(pb::EchoResponse {
            name: req.name,
            value: self.payload[..req.size as usize].to_vec(),
        }))
    }
}

/// Serves the echo service on `listen` until the process is killed.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    serve_on(listener, Arc::default()).await
}

/// Serves on `listener`; while someone holds `stall`'s write lock, requests wait.
pub async fn serve_on(listener: tokio::net::TcpListener, stall: Arc<RwLock<()>>) -> anyhow::Result<()> {
    let echo = Echo {
        payload: vec![0x5a; MAX_SIZE as usize],
        stall,
    };
    tonic::transport::Server::builder()
        .add_service(pb::echo_server::EchoServer::new(echo))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)))
        .await?;
    Ok(())
}

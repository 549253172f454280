//! turmoil sockets behind the node's acceptor and connector seams (no simulation branches in
//! the node), and a tap that scans peer traffic for secret plaintext.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::task::Context;
use std::task::Poll;
use std::time::Duration;

use coffer_raft::error::AddressError;
use coffer_raft::network::Connector;
use coffer_raft::peer_auth::PeerCredential;
use futures::Stream;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncRead;
use tokio::io::AsyncWrite;
use tokio::io::ReadBuf;
use tonic::transport::server::Connected;
use tonic::transport::Channel;
use tonic::transport::Endpoint;

/// Every secret value the workload writes starts with this marker, so a tap finds leaked
/// plaintext with one substring search.
pub const VALUE_MARKER: &[u8] = b"SIM-PLAINTEXT:";

/// Where plaintext was seen on the wire (peer connections only: clients send values by design).
#[derive(Default)]
pub struct Leaks {
    pub seen: Mutex<Vec<String>>,
}

impl Leaks {
    fn report(&self, what: String) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() < 10 {
            seen.push(what);
        }
    }
}

/// A turmoil stream that (when tapped) checks what it writes for [`VALUE_MARKER`].
pub struct SimStream {
    inner: turmoil::net::TcpStream,
    tap: Option<(Arc<Leaks>, String)>,
    /// The last bytes written, so a marker split across writes is still found.
    tail: Vec<u8>,
}

impl SimStream {
    pub fn new(inner: turmoil::net::TcpStream, tap: Option<(Arc<Leaks>, String)>) -> Self {
        Self {
            inner,
            tap,
            tail: Vec::new(),
        }
    }

    fn scan(&mut self, buf: &[u8]) {
        let Some((leaks, label)) = &self.tap else { return };
        let mut joined = std::mem::take(&mut self.tail);
        joined.extend_from_slice(buf);
        if joined.windows(VALUE_MARKER.len()).any(|w| w == VALUE_MARKER) {
            leaks.report(format!("plaintext marker in peer traffic ({label})"));
        }
        let keep = VALUE_MARKER.len().saturating_sub(1).min(joined.len());
        self.tail = joined[joined.len() - keep..].to_vec();
    }
}

impl Connected for SimStream {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for SimStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            let n = *n;
            self.scan(&buf[..n]);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Accepted connections of a turmoil listener as the stream tonic's server takes.
pub fn incoming(
    listener: turmoil::net::TcpListener,
    tap: Option<(Arc<Leaks>, String)>,
) -> impl Stream<Item = io::Result<SimStream>> + Send + 'static {
    futures::stream::unfold((listener, tap), |(l, tap)| async move {
        let r = l.accept().await.map(|(s, _)| SimStream::new(s, tap.clone()));
        Some((r, (l, tap)))
    })
}

/// A tonic channel to `addr` over turmoil TCP that connects lazily.
pub fn channel(addr: &str, tap: Option<(Arc<Leaks>, String)>) -> Result<Channel, AddressError> {
    let target = addr.to_string();
    let ep = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| AddressError {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?
        .connect_timeout(Duration::from_secs(2))
        // A partition drops segments and turmoil TCP does not retransmit, so a connection cut
        // mid-stream stays dead: keepalives notice and the channel reconnects (as in production).
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(2))
        .keep_alive_while_idle(true);
    Ok(ep.connect_with_connector_lazy(tower::service_fn(move |_uri| {
        let target = target.clone();
        let tap = tap.clone();
        async move {
            let s = turmoil::net::TcpStream::connect(target.as_str()).await?;
            Ok::<_, io::Error>(TokioIo::new(SimStream::new(s, tap)))
        }
    })))
}

/// The peer connector of a simulated node: turmoil TCP, tapped; requests carry the node's
/// proof under the cluster key, as production plaintext peers do.
pub struct SimConnector {
    pub leaks: Arc<Leaks>,
    pub from: String,
    pub credential: PeerCredential,
}

impl Connector for SimConnector {
    fn channel(&self, addr: &str) -> Result<Channel, AddressError> {
        channel(addr, Some((self.leaks.clone(), format!("{} -> {addr}", self.from))))
    }

    fn credential(&self) -> PeerCredential {
        self.credential.clone()
    }
}

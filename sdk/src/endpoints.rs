//! [`Nodes`]: a channel per node, the local region's first, and calls that fail over.
//!
//! A call goes to the first node not marked down (in [`Config::ordered`] order); a node that
//! fails with a transport error or a retryable code is marked down for `down_for` and the call
//! moves on to the next. After a round over every node the call waits (exponential backoff with
//! full jitter) and starts over, up to `attempts` rounds. A refusal (not found, denied, bad
//! input, …) is returned at once: another node would say the same. The local region's node is
//! used again as soon as its mark expires.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use coffer_proto as pb;
use tokio::time::Instant;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;

use crate::config::Config;
use crate::config::Endpoint;
use crate::error::SdkError;

/// Adds the bearer token to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

pub type Secrets = pb::secrets_client::SecretsClient<InterceptedService<Channel, Bearer>>;

pub struct Node {
    pub endpoint: Endpoint,
    secrets: Secrets,
    down_until: Mutex<Option<Instant>>,
}

impl Node {
    pub fn client(&self) -> Secrets {
        self.secrets.clone()
    }

    fn is_down(&self, now: Instant) -> bool {
        self.down_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t > now)
    }

    fn mark(&self, until: Option<Instant>) {
        *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) = until;
    }
}

pub struct Nodes {
    nodes: Vec<Node>,
    attempts: u32,
    backoff: Duration,
    max_backoff: Duration,
    call_timeout: Duration,
    down_for: Duration,
}

impl Nodes {
    /// Channels to every endpoint (connected on first use).
    pub fn new(cfg: &Config) -> Result<Self, SdkError> {
        cfg.validate()?;
        let bearer = Bearer(
            format!("Bearer {}", cfg.token)
                .parse()
                .map_err(|_| SdkError::InvalidConfig("the token is not ASCII".into()))?,
        );
        let mut nodes = Vec::new();
        for e in cfg.ordered() {
            let bad = |m: String| SdkError::InvalidConfig(format!("endpoint {}: {m}", e.addr));
            let mut ep = tonic::transport::Endpoint::from_shared(e.addr.clone())
                .map_err(|err| bad(err.to_string()))?
                .connect_timeout(cfg.connect_timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(5));
            if let (true, Some(ca)) = (e.addr.starts_with("https://"), &cfg.ca_pem) {
                let tls = tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(ca));
                ep = ep.tls_config(tls).map_err(|err| bad(err.to_string()))?;
            }
            let channel = ep.connect_lazy();
            nodes.push(Node {
                endpoint: e,
                secrets: pb::secrets_client::SecretsClient::with_interceptor(channel, bearer.clone()),
                down_until: Mutex::new(None),
            });
        }
        Ok(Self {
            nodes,
            attempts: cfg.attempts,
            backoff: cfg.backoff,
            max_backoff: cfg.max_backoff,
            call_timeout: cfg.call_timeout,
            down_for: cfg.down_for,
        })
    }

    /// The nodes in the order a call tries them: those not marked down first.
    pub fn order(&self) -> Vec<&Node> {
        let now = Instant::now();
        let (up, down): (Vec<&Node>, Vec<&Node>) = self.nodes.iter().partition(|n| !n.is_down(now));
        up.into_iter().chain(down).collect()
    }

    /// Marks `node` down after a failure that another node might not have.
    pub fn failed(&self, node: &Node) {
        node.mark(Some(Instant::now() + self.down_for));
    }

    /// Runs `f` on the nodes in order until one answers, retrying rounds with backoff.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<(T, &Endpoint), SdkError>
    where
        F: Fn(Secrets) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let mut last = SdkError::Unreachable("no endpoint was tried".into());
        for round in 0..self.attempts {
            if round > 0 {
                tokio::time::sleep(backoff(self.backoff, self.max_backoff, round)).await;
            }
            for node in self.order() {
                let e = match tokio::time::timeout(self.call_timeout, f(node.client())).await {
                    Ok(Ok(v)) => {
                        node.mark(None);
                        return Ok((v, &node.endpoint));
                    }
                    Ok(Err(s)) => SdkError::from_status(&s),
                    Err(_) => SdkError::Unreachable(format!(
                        "{} did not answer in {:?}",
                        node.endpoint.addr, self.call_timeout
                    )),
                };
                if !e.retryable() {
                    return Err(e);
                }
                metrics::counter!("coffer_sdk_failovers_total").increment(1);
                self.failed(node);
                last = e;
            }
        }
        Err(last)
    }
}

/// Full jitter: a uniform wait in [0, min(max, base * 2^round)].
pub fn backoff(base: Duration, max: Duration, round: u32) -> Duration {
    let cap = base.saturating_mul(1u32 << round.min(16)).min(max);
    cap.mul_f64(unit_random())
}

/// A uniform draw from [0, 1).
pub fn unit_random() -> f64 {
    let mut b = [0u8; 8];
    // Jitter only: a fixed draw (no randomness available) still bounds the wait.
    if getrandom::getrandom(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_stays_under_it() {
        for round in 0..10 {
            let d = backoff(Duration::from_millis(50), Duration::from_secs(2), round);
            assert!(d <= Duration::from_millis(50 * (1 << round)).min(Duration::from_secs(2)));
        }
        let draws: Vec<f64> = (0..100).map(|_| unit_random()).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        assert!(draws.iter().any(|d| *d != draws[0]), "jitter that never varies");
    }
}

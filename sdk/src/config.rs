//! [`Config`]: where the nodes are, which region is local, the token, and the cache's rules.

use std::time::Duration;

use crate::error::SdkError;

/// One node's API address and the region it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `http://host:port` or `https://host:port`.
    pub addr: String,
    pub region: String,
}

/// How a [`crate::Coffer`] client connects and caches.
#[derive(Clone)]
pub struct Config {
    /// Every node the client may use; those of `region` first, the others when they fail.
    pub endpoints: Vec<Endpoint>,
    /// The client's own region.
    pub region: String,
    pub token: String,
    /// PEM of the CA that signs the nodes' certificates (for `https://` endpoints).
    pub ca_pem: Option<Vec<u8>>,
    /// How long a cached value is served without asking again (each entry's TTL is this less
    /// up to `ttl_jitter` of it, so a fleet's refreshes do not line up).
    pub ttl: Duration,
    pub ttl_jitter: f64,
    /// How long a cached value may still be served while refreshes fail (counted from the last
    /// successful fetch); past it, a read fails. Never applies to a revoked value.
    pub max_stale: Duration,
    /// Attempts per read over the endpoints (each a round over every endpoint), with
    /// exponential backoff and full jitter between rounds, from `backoff` up to `max_backoff`.
    pub attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// A call's deadline on one node, and how long connecting to one may take.
    pub call_timeout: Duration,
    pub connect_timeout: Duration,
    /// How long an endpoint that failed is skipped before it is tried again.
    pub down_for: Duration,
    /// Keep the cache fresh through the watch stream (on by default).
    pub watch: bool,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("endpoints", &self.endpoints)
            .field("region", &self.region)
            .field("token", &"[redacted]")
            .field("ttl", &self.ttl)
            .field("max_stale", &self.max_stale)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Defaults: TTL 5 min (10% jitter), max_stale 1 h, 3 attempts from 50 ms to 2 s, calls
    /// of 5 s, connects of 1 s, a failed endpoint skipped for 2 s, watch on.
    pub fn new(region: impl Into<String>, token: impl Into<String>, endpoints: Vec<Endpoint>) -> Self {
        Self {
            endpoints,
            region: region.into(),
            token: token.into(),
            ca_pem: None,
            ttl: Duration::from_secs(300),
            ttl_jitter: 0.1,
            max_stale: Duration::from_secs(3600),
            attempts: 3,
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            call_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
            down_for: Duration::from_secs(2),
            watch: true,
        }
    }

    pub fn validate(&self) -> Result<(), SdkError> {
        let bad = |m: String| Err(SdkError::InvalidConfig(m));
        if self.endpoints.is_empty() {
            return bad("no endpoints: list every node's API address and region".into());
        }
        for e in &self.endpoints {
            if !(e.addr.starts_with("http://") || e.addr.starts_with("https://")) {
                return bad(format!("endpoint {:?} must start with http:// or https://", e.addr));
            }
            if e.addr.starts_with("https://") && self.ca_pem.is_none() {
                return bad(format!("endpoint {} is https: give ca_pem", e.addr));
            }
        }
        if self.token.is_empty() || self.token.chars().any(|c| c.is_control() || c == ' ') {
            return bad("the token is empty or not a single printable word".into());
        }
        if !(0.0..=0.5).contains(&self.ttl_jitter) {
            return bad(format!("ttl_jitter {} must be between 0 and 0.5", self.ttl_jitter));
        }
        if self.ttl.is_zero() {
            return bad("ttl must be more than 0".into());
        }
        if self.attempts == 0 || self.attempts > 20 {
            return bad(format!("attempts {} must be 1 to 20", self.attempts));
        }
        if self.backoff > self.max_backoff {
            return bad("backoff must not exceed max_backoff".into());
        }
        Ok(())
    }

    /// The endpoints in the order they are tried: the local region's first, each group in the
    /// order given.
    pub fn ordered(&self) -> Vec<Endpoint> {
        let (mut local, others): (Vec<_>, Vec<_>) =
            self.endpoints.iter().cloned().partition(|e| e.region == self.region);
        local.extend(others);
        local
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(addr: &str, region: &str) -> Endpoint {
        Endpoint {
            addr: addr.into(),
            region: region.into(),
        }
    }

    #[test]
    fn the_local_region_comes_first_and_bad_settings_are_named() {
        let c = Config::new(
            "eu",
            "cft_fake",
            vec![ep("http://a:1", "us"), ep("http://b:1", "eu"), ep("http://c:1", "ap")],
        );
        let order: Vec<String> = c.ordered().into_iter().map(|e| e.addr).collect();
        assert_eq!(order, ["http://b:1", "http://a:1", "http://c:1"]);
        assert!(c.validate().is_ok());
        assert!(format!("{c:?}").contains("[redacted]") && !format!("{c:?}").contains("cft_fake"));
        let mut bad = c.clone();
        bad.endpoints[0].addr = "a:1".into();
        assert!(bad.validate().unwrap_err().to_string().contains("http://"));
        let mut bad = c.clone();
        bad.ttl_jitter = 2.0;
        assert_eq!(bad.validate().unwrap_err().code(), "invalid_config");
        let mut bad = c;
        bad.endpoints.clear();
        assert!(bad.validate().is_err());
    }
}

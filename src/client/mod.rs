//! The Rust SDK: typed gRPC clients that carry the bearer token.

use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;
use tonic::transport::Endpoint;
use tonic::Request;
use tonic::Status;

use crate::pb;

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone)]
pub struct TokenInterceptor {
    header: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl Interceptor for TokenInterceptor {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(h) = &self.header {
            req.metadata_mut().insert("authorization", h.clone());
        }
        Ok(req)
    }
}

pub type SecretsClient = pb::secrets_client::SecretsClient<InterceptedService<Channel, TokenInterceptor>>;
pub type ClusterClient = pb::cluster_client::ClusterClient<InterceptedService<Channel, TokenInterceptor>>;
pub type KmsClient = pb::kms_client::KmsClient<InterceptedService<Channel, TokenInterceptor>>;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid address {addr:?}: {reason}")]
    BadAddress { addr: String, reason: String },
    #[error("the token contains characters that cannot be sent; check COFFER_TOKEN")]
    BadToken,
    #[error("cannot reach coffer at {addr}: {reason}")]
    Connect { addr: String, reason: String },
}

#[derive(Clone)]
pub struct Client {
    pub addr: String,
    pub secrets: SecretsClient,
    pub cluster: ClusterClient,
    pub kms: KmsClient,
}

/// Normalises `host:port` to `http://host:port`.
pub fn normalize_addr(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

impl Client {
    /// Connects to a node's API. `token` may be absent (calls then fail UNAUTHENTICATED).
    pub async fn connect(addr: &str, token: Option<&str>) -> Result<Self, ClientError> {
        let url = normalize_addr(addr);
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| ClientError::BadAddress {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .tcp_nodelay(true);
        let channel = endpoint.connect().await.map_err(|e| ClientError::Connect {
            addr: url.clone(),
            reason: error_chain(&e),
        })?;
        let header = match token {
            Some(t) => Some(
                format!("Bearer {t}")
                    .parse::<MetadataValue<tonic::metadata::Ascii>>()
                    .map_err(|_| ClientError::BadToken)?,
            ),
            None => None,
        };
        let interceptor = TokenInterceptor { header };
        Ok(Self {
            addr: url,
            secrets: pb::secrets_client::SecretsClient::with_interceptor(channel.clone(), interceptor.clone()),
            cluster: pb::cluster_client::ClusterClient::with_interceptor(channel.clone(), interceptor.clone()),
            kms: pb::kms_client::KmsClient::with_interceptor(channel, interceptor),
        })
    }
}

/// `e: cause: cause` on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

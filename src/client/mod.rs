//! The Rust SDK: typed gRPC clients that carry the bearer token, over TLS when given a CA
//! ([`ClientTls`], [`Client::connect_with`]).

pub mod error;
pub mod tls;

use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;
use tonic::transport::Endpoint;
use tonic::Request;
use tonic::Status;

use crate::pb;
pub use error::{error_chain, ClientError, TlsProblem};
pub use tls::ClientTls;

/// Adds `authorization: Bearer <token>` to every request, and the client's request id when
/// one is set ([`Client::with_request_id`]).
#[derive(Clone)]
pub struct TokenInterceptor {
    header: Option<MetadataValue<tonic::metadata::Ascii>>,
    request_id: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl Interceptor for TokenInterceptor {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(h) = &self.header {
            req.metadata_mut().insert("authorization", h.clone());
        }
        if let Some(id) = &self.request_id {
            if !req.metadata().contains_key(crate::request_ids::HEADER) {
                req.metadata_mut().insert(crate::request_ids::HEADER, id.clone());
            }
        }
        Ok(req)
    }
}

/// `msg` as a request that carries `request_id`: send the same id with every attempt of one
/// write, and a retry after a timeout or a lost connection is answered with the first
/// attempt's outcome instead of being applied twice (for `cluster.request_retention_ms`,
/// 10 minutes by default).
pub fn with_request_id<T>(msg: T, request_id: &str) -> Result<Request<T>, ClientError> {
    crate::request_ids::validate_client_id(request_id).map_err(ClientError::BadRequestId)?;
    let mut req = Request::new(msg);
    req.metadata_mut().insert(
        crate::request_ids::HEADER,
        request_id
            .parse()
            .map_err(|_| ClientError::BadRequestId("not ASCII".into()))?,
    );
    Ok(req)
}

pub type SecretsClient = pb::secrets_client::SecretsClient<InterceptedService<Channel, TokenInterceptor>>;
pub type ClusterClient = pb::cluster_client::ClusterClient<InterceptedService<Channel, TokenInterceptor>>;
pub type KmsClient = pb::kms_client::KmsClient<InterceptedService<Channel, TokenInterceptor>>;
pub type AccessClient = pb::access_client::AccessClient<InterceptedService<Channel, TokenInterceptor>>;

#[derive(Clone)]
pub struct Client {
    pub addr: String,
    pub secrets: SecretsClient,
    pub cluster: ClusterClient,
    pub kms: KmsClient,
    pub access: AccessClient,
    channel: Channel,
    interceptor: TokenInterceptor,
}

/// Normalises `host:port` to `http://host:port`.
pub fn normalize_addr(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

/// The URL to dial: `https://` and `http://` addresses as given; a bare `host:port` over TLS
/// when `tls` (a CA is configured), else plaintext.
pub fn url_for(addr: &str, tls: bool) -> String {
    match (addr.contains("://"), tls) {
        (true, _) => addr.to_string(),
        (false, true) => format!("https://{addr}"),
        (false, false) => format!("http://{addr}"),
    }
}

impl Client {
    /// Connects to a node's API in plaintext (or fails on an `https://` address: use
    /// [`Client::connect_with`]). `token` may be absent (calls then fail UNAUTHENTICATED).
    pub async fn connect(addr: &str, token: Option<&str>) -> Result<Self, ClientError> {
        Self::connect_with(addr, token, None).await
    }

    /// Connects to a node's API. With `tls`, `https://` and bare addresses use TLS, verifying
    /// the server against `tls`'s CA and presenting its client certificate if it has one;
    /// `http://` addresses stay plaintext.
    pub async fn connect_with(addr: &str, token: Option<&str>, tls: Option<&ClientTls>) -> Result<Self, ClientError> {
        let url = url_for(addr, tls.is_some());
        let bad = |reason: String| ClientError::BadAddress {
            addr: addr.to_string(),
            reason,
        };
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| bad(e.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .tcp_nodelay(true);
        let use_tls = url.starts_with("https://");
        if use_tls {
            let tls = tls.ok_or_else(|| ClientError::NoCa { addr: url.clone() })?;
            endpoint = endpoint
                .tls_config(tls.tonic_config())
                .map_err(|e| bad(error_chain(&e)))?;
        }
        let channel = endpoint.connect().await.map_err(|e| {
            let reason = error_chain(&e);
            match error::classify(&reason) {
                Some(problem) if use_tls => ClientError::Tls {
                    addr: url.clone(),
                    problem,
                },
                _ => ClientError::Connect {
                    addr: url.clone(),
                    reason,
                },
            }
        })?;
        let header = match token {
            Some(t) => Some(
                format!("Bearer {t}")
                    .parse::<MetadataValue<tonic::metadata::Ascii>>()
                    .map_err(|_| ClientError::BadToken)?,
            ),
            None => None,
        };
        let interceptor = TokenInterceptor {
            header,
            request_id: None,
        };
        Ok(Self::build(url, channel, interceptor))
    }

    fn build(addr: String, channel: Channel, interceptor: TokenInterceptor) -> Self {
        Self {
            addr,
            secrets: pb::secrets_client::SecretsClient::with_interceptor(channel.clone(), interceptor.clone()),
            cluster: pb::cluster_client::ClusterClient::with_interceptor(channel.clone(), interceptor.clone()),
            kms: pb::kms_client::KmsClient::with_interceptor(channel.clone(), interceptor.clone()),
            access: pb::access_client::AccessClient::with_interceptor(channel.clone(), interceptor.clone()),
            channel,
            interceptor,
        }
    }

    /// This client, sending `request_id` with every call that carries none of its own (see
    /// [`with_request_id`]; for a client that makes one write, like one CLI invocation).
    pub fn with_request_id(self, request_id: &str) -> Result<Self, ClientError> {
        crate::request_ids::validate_client_id(request_id).map_err(ClientError::BadRequestId)?;
        let mut interceptor = self.interceptor;
        interceptor.request_id = Some(
            request_id
                .parse()
                .map_err(|_| ClientError::BadRequestId("not ASCII".into()))?,
        );
        Ok(Self::build(self.addr, self.channel, interceptor))
    }
}

//! Calls to the owners' rotators (the `hook` strategy; docs/architecture.md: Rotation).
//!
//! For run N of a secret, the leader POSTs `{"secret", "run", "token", "alias": "PENDING"}` as
//! JSON to the secret's `hook_url`. The rotator makes the new credential, writes it with
//! `PutSecretValue` (`rotation_run` = N, `rotation_token` = the token) and answers 2xx. The call
//! never carries a value; the token (a MAC bound to the cluster, the secret and the run) lets
//! the put land as run N's PENDING version and nothing else, and the run takes one value, so a
//! rotator called twice (a retry, a new leader) writes once.
//!
//! The scheduler then checks its replica: a run still waiting for its value after a 2xx, a
//! non-2xx answer, a refused connection or certificate, or no answer within the timeout is a
//! failed attempt with its reason (retried after a backoff; CURRENT never moves).
//!
//! [`Rotators`] is the seam: [`HttpsRotators`] in the server, another caller in tests.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use http_body_util::Full;
use http_body_util::Limited;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncRead;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio_rustls::rustls;

use crate::tokens::RotationToken;

/// The most of a rotator's answer read (and at most [`REASON_BYTES`] of it kept).
const MAX_ANSWER_BYTES: usize = 4096;
/// The most of a failed answer's body kept in the run's reason.
const REASON_BYTES: usize = 96;

/// One call: run `run` of `secret` waits for its value.
#[derive(Debug)]
pub struct HookCall {
    pub secret: String,
    pub run: u64,
    pub token: RotationToken,
}

impl HookCall {
    /// The JSON body (the token in it; never logged).
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "secret": self.secret,
            "run": self.run,
            "token": self.token.expose(),
            "alias": "PENDING",
        }))
        .unwrap_or_default()
    }
}

/// Why a call failed, in one line (no token, no value).
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("hook {url}: no answer within {ms} ms")]
    Timeout { url: String, ms: u128 },
    #[error("hook {url}: {problem}")]
    Unreachable { url: String, problem: String },
    #[error("hook {url} answered {status}{body}")]
    Refused { url: String, status: u16, body: String },
}

/// Calls a rotator; the scheduler's seam (the server's is [`HttpsRotators`]).
#[async_trait::async_trait]
pub trait Rotators: Send + Sync {
    /// POSTs `call` to `url`; Ok when the rotator answered 2xx.
    async fn call(&self, url: &str, call: &HookCall) -> Result<(), HookError>;
}

/// Rotators over HTTPS (http only to a loopback host, as `hook_url` allows), trusting the
/// system's roots and `[rotation] hook_ca_file`; each call bounded by the timeout.
pub struct HttpsRotators {
    tls: tokio_rustls::TlsConnector,
    timeout: Duration,
}

impl HttpsRotators {
    /// `extra_ca_pem`: certificates trusted beside the system's roots.
    pub fn new(extra_ca_pem: Option<&[u8]>, timeout: Duration) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            // A system root rustls cannot use is skipped, like every TLS client does.
            let _ = roots.add(cert);
        }
        if let Some(pem) = extra_ca_pem {
            let certs = crate::tls::pem_certs(pem);
            if certs.is_empty() {
                return Err("rotation.hook_ca_file holds no PEM certificate".into());
            }
            for der in certs {
                roots
                    .add(der.into())
                    .map_err(|e| format!("rotation.hook_ca_file: a certificate is not usable: {e}"))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS for rotation hooks: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            timeout,
        })
    }

    async fn post(&self, url: &str, call: &HookCall) -> Result<(), HookError> {
        let unreachable = |problem: String| HookError::Unreachable {
            url: url.to_string(),
            problem,
        };
        let uri: hyper::Uri = url.parse().map_err(|e| unreachable(format!("not a URL: {e}")))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(unreachable("is neither https nor http".into())),
        };
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if !https && !coffer_model::rotation_policy::is_loopback_host(host) {
            return Err(unreachable("http is only for a loopback rotator".into()));
        }
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = uri.authority().map(|a| a.as_str().to_string()).unwrap_or_default();
        let request = hyper::Request::post(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(hyper::header::HOST, authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, "coffer-rotation")
            .body(Full::new(Bytes::from(call.body())))
            .map_err(|e| unreachable(format!("cannot build the request: {e}")))?;
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|e| unreachable(format!("cannot connect: {e}")))?;
        let (status, body) = if https {
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| unreachable(format!("bad host name: {e}")))?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| unreachable(format!("TLS: {e}")))?;
            exchange(tls, request).await
        } else {
            exchange(tcp, request).await
        }
        .map_err(unreachable)?;
        if status.is_success() {
            return Ok(());
        }
        let body = String::from_utf8_lossy(&body);
        let body: String = crate::safe_text::line(&body).chars().take(REASON_BYTES).collect();
        Err(HookError::Refused {
            url: url.to_string(),
            status: status.as_u16(),
            body: if body.is_empty() {
                String::new()
            } else {
                format!(": {body}")
            },
        })
    }
}

/// One HTTP/1.1 request on `io` and its answer's status and (bounded) body.
async fn exchange<IO>(io: IO, request: hyper::Request<Full<Bytes>>) -> Result<(hyper::StatusCode, Bytes), String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let conn = tokio::spawn(conn);
    let answer = async {
        let resp = sender.send_request(request).await.map_err(|e| format!("HTTP: {e}"))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Ok((status, body))
    }
    .await;
    conn.abort();
    answer
}

#[async_trait::async_trait]
impl Rotators for HttpsRotators {
    async fn call(&self, url: &str, call: &HookCall) -> Result<(), HookError> {
        match tokio::time::timeout(self.timeout, self.post(url, call)).await {
            Ok(r) => r,
            Err(_) => Err(HookError::Timeout {
                url: url.to_string(),
                ms: self.timeout.as_millis(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_names_the_run_and_carries_the_token_and_debug_does_not() {
        let key = crate::tokens::TokenKey::new("c", crate::crypto::SecretValue::new(vec![7; 32]));
        let call = HookCall {
            secret: "acme/db".into(),
            run: 3,
            token: key.rotation_token("acme/db", 3),
        };
        let body: serde_json::Value = serde_json::from_slice(&call.body()).unwrap();
        assert_eq!(body["secret"], "acme/db");
        assert_eq!(body["run"], 3);
        assert_eq!(body["alias"], "PENDING");
        let token = body["token"].as_str().unwrap();
        assert!(key.verify_rotation_token("acme/db", 3, token));
        assert!(!format!("{call:?}").contains(token));
    }

    #[tokio::test]
    async fn http_is_refused_to_a_host_that_is_not_loopback_and_a_dead_port_is_unreachable() {
        let r = HttpsRotators::new(None, Duration::from_secs(2)).unwrap();
        let call = HookCall {
            secret: "acme/db".into(),
            run: 1,
            token: crate::tokens::TokenKey::new("c", crate::crypto::SecretValue::new(vec![7; 32]))
                .rotation_token("acme/db", 1),
        };
        let e = r.call("http://rotator.acme.invalid/x", &call).await.unwrap_err();
        assert!(e.to_string().contains("only for a loopback"), "{e}");
        // A port nobody listens on (bound, then closed).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = r.call(&format!("http://127.0.0.1:{port}/x"), &call).await.unwrap_err();
        assert!(e.to_string().contains("cannot connect"), "{e}");
    }
}

//! HTTP/1.1 JSON APIs under load: Coffer's (`GET /v1/secrets/{name}`) and OpenBao's KV v2
//! (`GET`/`POST /v1/secret/data/{name}`), over keep-alive connections. One request at a time per
//! connection, so an [`HttpConn`] keeps a small pool and opens a connection when every pooled
//! one is busy (at most one per request in flight).

use std::sync::Arc;
use std::sync::Mutex;

use http_body_util::BodyExt;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::HeaderName;
use hyper::header::HeaderValue;
use hyper::Method;
use hyper_util::rt::TokioIo;

/// Largest answer a call reads (bounds what a misbehaving server could make the client hold).
const MAX_BODY: usize = 8 << 20;

#[derive(Clone)]
pub struct HttpConn {
    addr: String,
    /// `authorization: Bearer …` for Coffer, `x-vault-token: …` for OpenBao.
    auth: (HeaderName, HeaderValue),
    idle: Arc<Mutex<Vec<SendRequest<Full<Bytes>>>>>,
}

impl HttpConn {
    /// Coffer's HTTP/JSON API at `addr` (`host:port`).
    pub fn new(addr: &str, token: &str) -> Self {
        Self::with_auth(addr, hyper::header::AUTHORIZATION, &format!("Bearer {token}"))
    }

    /// OpenBao's API at `addr` (`host:port`).
    pub fn openbao(addr: &str, token: &str) -> Self {
        Self::with_auth(addr, HeaderName::from_static("x-vault-token"), token)
    }

    fn with_auth(addr: &str, name: HeaderName, value: &str) -> Self {
        let mut value = HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static("invalid-token"));
        value.set_sensitive(true);
        Self {
            addr: addr.trim_start_matches("http://").to_string(),
            auth: (name, value),
            idle: Arc::default(),
        }
    }

    async fn sender(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        loop {
            let pooled = self.idle.lock().expect("pool lock").pop();
            match pooled {
                Some(s) if s.is_ready() => return Ok(s),
                Some(_) => continue,
                None => break,
            }
        }
        let stream = tokio::net::TcpStream::connect(&self.addr)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", self.addr))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(sender)
    }

    /// One request; the status and the body (the connection goes back to the pool).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(hyper::StatusCode, Bytes), String> {
        let mut sender = self.sender().await?;
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.addr)
            .header(self.auth.0.clone(), self.auth.1.clone());
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        self.idle.lock().expect("pool lock").push(sender);
        Ok((status, body))
    }

    /// `request`, with a non-2xx status as an error and the body as JSON.
    async fn json(&self, method: Method, path: &str, body: Option<Bytes>) -> Result<serde_json::Value, String> {
        let (status, body) = self.request(method, path, body).await?;
        if !status.is_success() {
            return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)));
        }
        if body.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    }

    /// One Coffer read of `name` at `consistency` (`local`, `linearizable`); the length of the
    /// value that came back.
    pub async fn read(&self, consistency: &str, name: &str) -> Result<usize, String> {
        let v = self
            .json(
                Method::GET,
                &format!("/v1/secrets/{name}?consistency={consistency}"),
                None,
            )
            .await?;
        v["value"]
            .as_str()
            .map(str::len)
            .ok_or_else(|| "no value in the answer".to_string())
    }

    /// One OpenBao KV v2 read of `name` (mounted at `secret/`); the length of its `value` field.
    pub async fn kv2_read(&self, name: &str) -> Result<usize, String> {
        let v = self.json(Method::GET, &format!("/v1/secret/data/{name}"), None).await?;
        v["data"]["data"]["value"]
            .as_str()
            .map(str::len)
            .ok_or_else(|| "no data.data.value in the answer".to_string())
    }

    /// One OpenBao KV v2 write of `name`: a new version whose `value` field is `value` (ASCII).
    pub async fn kv2_write(&self, name: &str, value: &str) -> Result<(), String> {
        let body = serde_json::to_vec(&serde_json::json!({"data": {"value": value}})).map_err(|e| e.to_string())?;
        let v = self
            .json(Method::POST, &format!("/v1/secret/data/{name}"), Some(body.into()))
            .await?;
        v["data"]["version"]
            .as_u64()
            .map(|_| ())
            .ok_or_else(|| "no data.version in the answer".to_string())
    }
}

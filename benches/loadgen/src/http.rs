//! Reads through Coffer's HTTP/JSON API (`GET /v1/secrets/{name}`), over HTTP/1.1 keep-alive
//! connections: one request at a time per connection, so a [`HttpConn`] keeps a small pool and
//! opens a connection when every pooled one is busy (at most one per request in flight).

use std::sync::Arc;
use std::sync::Mutex;

use http_body_util::BodyExt;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

#[derive(Clone)]
pub struct HttpConn {
    addr: String,
    authorization: String,
    idle: Arc<Mutex<Vec<SendRequest<Empty<Bytes>>>>>,
}

impl HttpConn {
    pub fn new(addr: &str, token: &str) -> Self {
        Self {
            addr: addr.to_string(),
            authorization: format!("Bearer {token}"),
            idle: Arc::default(),
        }
    }

    async fn sender(&self) -> Result<SendRequest<Empty<Bytes>>, String> {
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
            .map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(sender)
    }

    /// One read of `name` at `consistency` (`local`, `linearizable`); the length of the value
    /// that came back.
    pub async fn read(&self, consistency: &str, name: &str) -> Result<usize, String> {
        let mut sender = self.sender().await?;
        let req = hyper::Request::get(format!("/v1/secrets/{name}?consistency={consistency}"))
            .header(hyper::header::HOST, &self.addr)
            .header(hyper::header::AUTHORIZATION, &self.authorization)
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        self.idle.lock().expect("pool lock").push(sender);
        if !status.is_success() {
            return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)));
        }
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        v["value"]
            .as_str()
            .map(str::len)
            .ok_or_else(|| "no value in the answer".to_string())
    }
}

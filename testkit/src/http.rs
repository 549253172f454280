//! A curl-like HTTP/1.1 client for the HTTP API tests: one request per connection, the status
//! and the JSON body back.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;

/// An answer: the status code and the body as JSON (`Null` when it is not JSON).
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    pub json: serde_json::Value,
    pub text: String,
}

impl HttpAnswer {
    /// The stable code of an error answer (`{"error": {"code"}}`).
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
}

/// `method path` with an optional bearer token and body, like
/// `curl -X METHOD -H "Authorization: Bearer TOKEN" --data BODY http://ADDR/PATH`.
pub async fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> std::io::Result<HttpAnswer> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await?;
    if let Some(b) = body {
        // A server may answer (413) and close before reading a large body: not an error here.
        let _ = s.write_all(b).await;
    }
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf))
        .await
        .map_err(|_| std::io::Error::other("timed out"))??;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {head:?}")))?;
    Ok(HttpAnswer {
        status,
        json: serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
        text: body.to_string(),
    })
}

//! A gRPC client that costs the load generator little: request messages encoded once (reads) or
//! with one copy of the value (writes), sent as unary calls over one `h2` connection, with the
//! answer checked for an HTTP 200, a `grpc-status` of 0 and one whole length-prefixed message.
//! No tower stack, no codec, no per-call channel: what is left is HTTP/2 framing and HPACK,
//! which every gRPC client pays. Plaintext (h2c with prior knowledge) only: the benchmark
//! clusters run on loopback without TLS, like `coffer dev` without `--tls`.

use bytes::BufMut;
use bytes::Bytes;
use bytes::BytesMut;
use http::header::HeaderValue;
use http::uri::Authority;
use http::uri::PathAndQuery;
use http::uri::Scheme;
use http::Method;
use http::Request;
use http::Uri;

/// Largest answer a call accepts (bounds the buffer a misbehaving server could grow).
const MAX_RESPONSE: usize = 8 << 20;

/// `msg` as one gRPC frame: an uncompressed flag, its length (big endian), the message.
pub fn frame(msg: &impl prost::Message) -> Bytes {
    let len = msg.encoded_len();
    let mut b = BytesMut::with_capacity(5 + len);
    b.put_u8(0);
    b.put_u32(len as u32);
    msg.encode(&mut b).expect("a BytesMut grows");
    b.freeze()
}

/// One HTTP/2 connection; clones share it (and its streams).
#[derive(Clone)]
pub struct H2Conn {
    send: h2::client::SendRequest<Bytes>,
    authority: Authority,
    authorization: Option<HeaderValue>,
}

impl H2Conn {
    /// Connects to `addr` (`host:port`, or `http://host:port`); `token` goes in every call's
    /// `authorization: Bearer` header.
    pub async fn connect(addr: &str, token: Option<&str>) -> anyhow::Result<H2Conn> {
        anyhow::ensure!(
            !addr.starts_with("https://"),
            "{addr}: the load generator speaks plaintext HTTP/2 only (start the cluster without --tls)"
        );
        let hostport = addr.strip_prefix("http://").unwrap_or(addr).trim_end_matches('/');
        let authority: Authority = hostport
            .parse()
            .map_err(|e| anyhow::anyhow!("{addr} is not host:port: {e}"))?;
        let tcp = tokio::net::TcpStream::connect(hostport)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to {hostport}: {e}"))?;
        tcp.set_nodelay(true)?;
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(16 << 20)
            .handshake(tcp)
            .await
            .map_err(|e| anyhow::anyhow!("HTTP/2 handshake with {hostport}: {e}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let authorization = match token {
            Some(t) => Some(
                HeaderValue::from_str(&format!("Bearer {t}"))
                    .map_err(|_| anyhow::anyhow!("the token is not a valid header value"))?,
            ),
            None => None,
        };
        Ok(H2Conn {
            send,
            authority,
            authorization,
        })
    }

    /// One unary call of `path` (`/package.Service/Method`) with the encoded `request` frame;
    /// the answer's message bytes (without the 5-byte prefix).
    pub async fn unary(&self, path: &'static str, request: Bytes) -> Result<Bytes, String> {
        let uri = Uri::from_parts({
            let mut p = http::uri::Parts::default();
            p.scheme = Some(Scheme::HTTP);
            p.authority = Some(self.authority.clone());
            p.path_and_query = Some(PathAndQuery::from_static(path));
            p
        })
        .map_err(|e| e.to_string())?;
        let mut req = Request::new(());
        *req.method_mut() = Method::POST;
        *req.uri_mut() = uri;
        let h = req.headers_mut();
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        h.insert(http::header::TE, HeaderValue::from_static("trailers"));
        if let Some(a) = &self.authorization {
            h.insert(http::header::AUTHORIZATION, a.clone());
        }
        let mut send = self.send.clone().ready().await.map_err(|e| e.to_string())?;
        let (response, mut body_out) = send.send_request(req, false).map_err(|e| e.to_string())?;
        body_out.send_data(request, true).map_err(|e| e.to_string())?;
        let response = response.await.map_err(|e| e.to_string())?;
        let (head, mut body) = response.into_parts();
        if head.status != http::StatusCode::OK {
            return Err(format!("HTTP {}", head.status));
        }
        // A trailers-only answer carries its status in the headers.
        if let Some(status) = head.headers.get("grpc-status") {
            return Err(grpc_error(status, head.headers.get("grpc-message")));
        }
        let mut buf = BytesMut::new();
        let mut single: Option<Bytes> = None;
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            let _ = body.flow_control().release_capacity(chunk.len());
            match single.take() {
                None if buf.is_empty() => single = Some(chunk),
                prev => {
                    if let Some(p) = prev {
                        buf.extend_from_slice(&p);
                    }
                    buf.extend_from_slice(&chunk);
                    if buf.len() > MAX_RESPONSE {
                        return Err(format!("answer larger than {MAX_RESPONSE} bytes"));
                    }
                }
            }
        }
        let trailers = body.trailers().await.map_err(|e| e.to_string())?.unwrap_or_default();
        match trailers.get("grpc-status") {
            Some(s) if s.as_bytes() == b"0" => {}
            Some(s) => return Err(grpc_error(s, trailers.get("grpc-message"))),
            None => return Err("the answer has no grpc-status".into()),
        }
        unframe(single.unwrap_or_else(|| buf.freeze()))
    }
}

/// The message of one uncompressed gRPC frame that fills `b` exactly.
fn unframe(b: Bytes) -> Result<Bytes, String> {
    if b.len() < 5 {
        return Err(format!("answer of {} bytes has no gRPC frame", b.len()));
    }
    if b[0] != 0 {
        return Err("compressed answers are not expected".into());
    }
    let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
    if b.len() != 5 + len {
        return Err(format!("frame says {len} bytes, {} arrived", b.len() - 5));
    }
    Ok(b.slice(5..))
}

fn grpc_error(status: &HeaderValue, message: Option<&HeaderValue>) -> String {
    format!(
        "grpc-status {}: {}",
        status.to_str().unwrap_or("?"),
        message.and_then(|m| m.to_str().ok()).unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_round_trips_and_a_short_or_long_body_is_refused() {
        let msg = crate::echo::pb::EchoRequest {
            name: "bench/v256/k00001".into(),
            size: 256,
        };
        let f = frame(&msg);
        assert_eq!(f[0], 0);
        assert_eq!(u32::from_be_bytes([f[1], f[2], f[3], f[4]]) as usize, f.len() - 5);
        let back = unframe(f.clone()).unwrap();
        let decoded: crate::echo::pb::EchoRequest = prost::Message::decode(back).unwrap();
        assert_eq!(decoded, msg);
        assert!(unframe(f.slice(..f.len() - 1)).unwrap_err().contains("arrived"));
        let mut longer = BytesMut::from(&f[..]);
        longer.put_u8(7);
        assert!(unframe(longer.freeze()).is_err());
        assert!(unframe(Bytes::from_static(&[0, 0])).is_err());
        assert!(unframe(Bytes::from_static(&[1, 0, 0, 0, 0]))
            .unwrap_err()
            .contains("compressed"));
    }
}

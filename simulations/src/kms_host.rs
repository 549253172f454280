//! One simulated KMS host per region, and the provider nodes use to reach it.
//!
//! The host holds the region's master key and wraps/unwraps data keys with AES-256-GCM bound to
//! the key context, like a cloud KMS. Calls travel over turmoil TCP, so a partition, a crash of
//! the host or a slow link is a KMS outage as the node's real [`KmsSet`] sees it (deadlines,
//! health, skipping, fallback, the rewrap job).
//!
//! [`KmsSet`]: coffer::crypto::kms::KmsSet

use aes_gcm::aead::Aead;
use aes_gcm::aead::Payload;
use aes_gcm::Aes256Gcm;
use aes_gcm::KeyInit;
use aes_gcm::Nonce;
use async_trait::async_trait;
use coffer::crypto::kms::KeyContext;
use coffer::crypto::kms::KeyRef;
use coffer::crypto::kms::Kms;
use coffer::crypto::kms::KmsError;
use coffer::crypto::DataKey;
use coffer::pb;
use prost::Message;
use sha2::Digest;
use sha2::Sha256;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;

const OP_WRAP: u32 = 1;
const OP_UNWRAP: u32 = 2;
const OP_CURRENT: u32 = 3;
/// Largest frame either side accepts.
const MAX_FRAME: u32 = 64 * 1024;

#[derive(Clone, PartialEq, prost::Message)]
pub struct KmsCall {
    #[prost(uint32, tag = "1")]
    pub op: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub blob: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub context: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KmsReply {
    #[prost(bool, tag = "1")]
    pub ok: bool,
    #[prost(bytes = "vec", tag = "2")]
    pub blob: Vec<u8>,
    #[prost(string, tag = "3")]
    pub error: String,
}

pub fn key_id(region: &str) -> String {
    format!("sim-kms/{region}")
}

/// The region's master key, derived from the seed (never a real key).
fn master_key(seed: u64, region: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"coffer-sim-kms");
    h.update(seed.to_le_bytes());
    h.update(region.as_bytes());
    h.finalize().into()
}

async fn read_frame(s: &mut turmoil::net::TcpStream) -> std::io::Result<Vec<u8>> {
    let n = s.read_u32().await?;
    if n > MAX_FRAME {
        return Err(std::io::Error::other("frame too large"));
    }
    let mut buf = vec![0; n as usize];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame(s: &mut turmoil::net::TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    s.write_u32(bytes.len() as u32).await?;
    s.write_all(bytes).await?;
    s.flush().await
}

fn answer(cipher: &Aes256Gcm, call: &KmsCall) -> KmsReply {
    let fail = |e: &str| KmsReply {
        ok: false,
        blob: vec![],
        error: e.into(),
    };
    match call.op {
        OP_WRAP => {
            // A nonce from the key and context: unique per data key, and deterministic.
            let mut h = Sha256::new();
            h.update(&call.blob);
            h.update(&call.context);
            let nonce: [u8; 12] = h.finalize()[..12].try_into().expect("12 bytes");
            match cipher.encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &call.blob,
                    aad: &call.context,
                },
            ) {
                Ok(ct) => KmsReply {
                    ok: true,
                    blob: [nonce.as_slice(), &ct].concat(),
                    error: String::new(),
                },
                Err(_) => fail("encrypt failed"),
            }
        }
        OP_UNWRAP if call.blob.len() > 12 => {
            let (nonce, ct) = call.blob.split_at(12);
            match cipher.decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: &call.context,
                },
            ) {
                Ok(pt) => KmsReply {
                    ok: true,
                    blob: pt,
                    error: String::new(),
                },
                Err(_) => fail("InvalidCiphertextException: wrong key or context"),
            }
        }
        OP_CURRENT => KmsReply {
            ok: true,
            blob: vec![],
            error: String::new(),
        },
        _ => fail("bad request"),
    }
}

/// The KMS host's software: serves calls until the host is crashed.
pub async fn serve(seed: u64, region: String) -> turmoil::Result {
    let cipher = Aes256Gcm::new_from_slice(&master_key(seed, &region)).expect("32-byte key");
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", crate::shape::KMS_PORT)).await?;
    loop {
        let (mut s, _) = listener.accept().await?;
        let cipher = cipher.clone();
        tokio::spawn(async move {
            let Ok(frame) = read_frame(&mut s).await else { return };
            let reply = match KmsCall::decode(frame.as_slice()) {
                Ok(call) => answer(&cipher, &call),
                Err(_) => KmsReply {
                    ok: false,
                    blob: vec![],
                    error: "undecodable request".into(),
                },
            };
            let _ = write_frame(&mut s, &reply.encode_to_vec()).await;
        });
    }
}

/// A node's provider for one region's simulated KMS host.
pub struct SimKms {
    pub region: String,
    /// `host:port` of the region's KMS host.
    pub addr: String,
    pub key: String,
}

impl SimKms {
    pub fn new(region: &str, addr: String) -> Self {
        Self {
            region: region.to_string(),
            addr,
            key: key_id(region),
        }
    }

    fn unavailable(&self, reason: String) -> KmsError {
        KmsError::Unavailable {
            region: self.region.clone(),
            provider: "sim".into(),
            key: self.key.clone(),
            reason,
        }
    }

    /// One call on a fresh connection; the caller ([`coffer::crypto::kms::KmsSet`]) bounds it.
    async fn call(&self, op: u32, blob: &[u8], ctx: &KeyContext) -> Result<Vec<u8>, KmsError> {
        let req = KmsCall {
            op,
            blob: blob.to_vec(),
            context: ctx.to_bytes(),
        };
        let io = |e: std::io::Error| self.unavailable(e.to_string());
        let mut s = turmoil::net::TcpStream::connect(self.addr.as_str()).await.map_err(io)?;
        write_frame(&mut s, &req.encode_to_vec()).await.map_err(io)?;
        let reply = KmsReply::decode(read_frame(&mut s).await.map_err(io)?.as_slice())
            .map_err(|e| self.unavailable(format!("bad reply: {e}")))?;
        if reply.ok {
            Ok(reply.blob)
        } else {
            Err(KmsError::Refused {
                region: self.region.clone(),
                provider: "sim".into(),
                key: self.key.clone(),
                reason: reply.error,
            })
        }
    }
}

#[async_trait]
impl Kms for SimKms {
    fn region(&self) -> &str {
        &self.region
    }
    fn provider(&self) -> &'static str {
        "sim"
    }
    fn key_ref(&self) -> &str {
        &self.key
    }
    async fn wrap(&self, dek: &DataKey, ctx: &KeyContext) -> Result<pb::WrappedKey, KmsError> {
        let blob = self.call(OP_WRAP, dek.expose(), ctx).await?;
        Ok(pb::WrappedKey {
            region: self.region.clone(),
            provider: "sim".into(),
            key_id: self.key.clone(),
            key_version: 1,
            blob,
        })
    }
    async fn unwrap(&self, w: &pb::WrappedKey, ctx: &KeyContext) -> Result<DataKey, KmsError> {
        let key = self.call(OP_UNWRAP, &w.blob, ctx).await?;
        DataKey::from_bytes(&key).map_err(|e| self.unavailable(e.to_string()))
    }
    async fn current_key(&self) -> Result<KeyRef, KmsError> {
        self.call(OP_CURRENT, &[], &KeyContext::for_secret("sim/probe")).await?;
        Ok(KeyRef {
            key_id: self.key.clone(),
            key_version: 1,
        })
    }
}

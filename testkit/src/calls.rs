//! One-line client calls and a bounded retry for tests.

use std::time::Duration;
use std::time::Instant;

use coffer::client::Client;
use coffer::pb;

/// Retries `f` until it returns Some or the timeout passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the cluster's token key exists (writes then carry consistency tokens): it is
/// sealed for every region, so KMS tests that count wraps start after it.
pub async fn wait_token_key(c: &Client) {
    eventually(Duration::from_secs(15), "the cluster token key", || async {
        let w = put(c, "acme/warmup/token-key", b"fake-warmup").await.ok()?;
        (!w.token.is_empty()).then_some(())
    })
    .await;
}

pub async fn put(c: &Client, name: &str, value: &[u8]) -> Result<pb::WriteResponse, tonic::Status> {
    c.secrets
        .clone()
        .put_secret_value(pb::PutSecretValueRequest {
            name: name.into(),
            value: value.to_vec(),
            alias: String::new(),
            must_exist: false,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

pub async fn get(c: &Client, name: &str, version: Option<u64>) -> Result<pb::GetSecretValueResponse, tonic::Status> {
    get_with(c, name, version, None).await
}

pub async fn get_with(
    c: &Client,
    name: &str,
    version: Option<u64>,
    consistency: Option<pb::read_consistency::Mode>,
) -> Result<pb::GetSecretValueResponse, tonic::Status> {
    c.secrets
        .clone()
        .get_secret_value(pb::GetSecretValueRequest {
            name: name.into(),
            selector: version.map(pb::get_secret_value_request::Selector::Version),
            consistency: consistency.map(|m| pb::ReadConsistency { mode: Some(m) }),
            break_glass: None,
        })
        .await
        .map(|r| r.into_inner())
}

/// Every version of `name` (metadata, no values), read linearizably.
pub async fn versions(c: &Client, name: &str) -> Result<Vec<pb::VersionInfo>, tonic::Status> {
    c.secrets
        .clone()
        .list_versions(pb::ListVersionsRequest {
            name: name.into(),
            consistency: Some(pb::ReadConsistency {
                mode: Some(pb::read_consistency::Mode::Linearizable(pb::LinearizableRead {})),
            }),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().versions)
}

/// Stores a policy document (JSON), panicking with the status if the cluster refuses it.
pub async fn put_policy(c: &Client, document: &str) {
    c.access
        .clone()
        .put_policy(pb::PutPolicyRequest {
            document: document.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("store the policy {document}: {e}"));
}

/// A token for `principal` in its own tenant, in `groups`, bound to `policies`, for `ttl`.
pub async fn create_token(
    c: &Client,
    principal: &str,
    groups: &[&str],
    policies: &[&str],
    ttl: Duration,
) -> pb::CreateTokenResponse {
    c.access
        .clone()
        .create_token(pb::CreateTokenRequest {
            principal: principal.into(),
            tenant: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            policies: policies.iter().map(|p| p.to_string()).collect(),
            ttl_ms: ttl.as_millis() as u64,
        })
        .await
        .unwrap_or_else(|e| panic!("create a token for {principal}: {e}"))
        .into_inner()
}

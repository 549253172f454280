//! The routes of the HTTP/JSON API. Each handler decodes the path, query and JSON body into the
//! gRPC request, calls the very handler gRPC calls (the same seam, audit record and domain
//! code), and encodes its answer as JSON.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::Method;
use axum::http::StatusCode;
use axum::http::Uri;
use axum::routing::any;
use axum::routing::get;
use axum::Extension;
use axum::Json;
use axum::Router;
use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use serde_json::Value;

use super::error::HttpError;
use crate::api::cluster::ClusterApi;
use crate::api::secrets::SecretsApi;
use crate::pb;
use crate::pb::secrets_server::Secrets as _;

/// The largest body taken: a 64 KiB value in base64 with room for the other fields.
pub const MAX_BODY_BYTES: usize = 96 * 1024;

/// The address a connection came from (set by the listener on every request).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

#[derive(Clone)]
pub struct Apis {
    pub secrets: Arc<SecretsApi>,
    pub cluster: Arc<ClusterApi>,
}

type Answer = Result<Json<Value>, HttpError>;

pub fn router(apis: Apis) -> Router {
    Router::new()
        .route("/v1/secrets", get(list))
        .route("/v1/secrets/{*path}", any(secret))
        .route("/v1/health", get(health))
        .fallback(|| async { HttpError::not_found("no such endpoint; see README.md: HTTP API") })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(apis)
}

/// The gRPC request the handlers are called with: the caller's headers (token, request id) as
/// metadata, its address as the connection's.
fn grpc<T>(headers: &HeaderMap, peer: Peer, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    *r.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers.clone());
    r.extensions_mut().insert(tonic::transport::server::TcpConnectInfo {
        local_addr: None,
        remote_addr: Some(peer.0),
    });
    r
}

/// A secret's path, `/v1/secrets/NAME[/versions | /aliases/ALIAS]`, split on its literal
/// slashes and each piece percent-decoded: a name whose last segment is `versions` (or whose
/// second-to-last is `aliases`) is addressed with that slash written `%2F`.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Secret(String),
    Versions(String),
    Alias(String, String),
}

fn target(uri: &Uri) -> Result<Target, HttpError> {
    let raw = uri.path().strip_prefix("/v1/secrets/").unwrap_or("");
    let pieces: Vec<String> = raw
        .split('/')
        .map(|p| {
            percent_encoding::percent_decode_str(p)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| HttpError::invalid("the path is not UTF-8 after percent-decoding"))
        })
        .collect::<Result<_, _>>()?;
    let n = pieces.len();
    Ok(match pieces.as_slice() {
        [name @ .., last] if n >= 2 && last == "versions" => Target::Versions(name.join("/")),
        [name @ .., a, alias] if n >= 3 && a == "aliases" => Target::Alias(name.join("/"), alias.clone()),
        _ => Target::Secret(pieces.join("/")),
    })
}

async fn secret(
    State(apis): State<Apis>,
    Extension(peer): Extension<Peer>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let Query(query) = query.map_err(|e| HttpError::invalid(format!("bad query string: {}", e.body_text())))?;
    match (target(&uri)?, method) {
        (Target::Secret(name), Method::GET) => get_value(&apis, &headers, peer, name, &query).await,
        (Target::Secret(name), Method::PUT) => put_value(&apis, &headers, peer, name, &body?).await,
        (Target::Versions(name), Method::GET) => versions(&apis, &headers, peer, name, &query).await,
        (Target::Alias(name, alias), Method::POST) => move_alias(&apis, &headers, peer, name, alias, &body?).await,
        (_, m) => Err(HttpError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "invalid_argument".into(),
            message: format!("{m} is not allowed here: GET or PUT a secret, GET …/versions, POST …/aliases/ALIAS"),
        }),
    }
}

impl From<BytesRejection> for HttpError {
    fn from(e: BytesRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return HttpError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "invalid_argument".into(),
                message: format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            };
        }
        HttpError::invalid(format!("cannot read the body: {}", e.body_text()))
    }
}

/// Parses a JSON body without ever quoting it back (it may hold a value).
fn parse<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, HttpError> {
    serde_json::from_slice(body).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "is not valid JSON",
            _ => "does not have the expected fields and types",
        };
        HttpError::invalid(format!(
            "the body {what} (line {}, column {}); expected {shape}",
            e.line(),
            e.column()
        ))
    })
}

/// `consistency=local|linearizable|bounded` (`max_staleness_ms`), or `at_least=TOKEN`.
fn consistency(q: &BTreeMap<String, String>) -> Result<Option<pb::ReadConsistency>, HttpError> {
    use pb::read_consistency::Mode;
    let mode = match (q.get("consistency").map(String::as_str), q.get("at_least")) {
        (None, None) => return Ok(None),
        (None | Some("at_least"), Some(token)) => Mode::AtLeast(pb::AtLeastRead {
            token: token.clone(),
            ..Default::default()
        }),
        (Some("local"), None) => Mode::Local(pb::LocalRead {}),
        (Some("linearizable"), None) => Mode::Linearizable(pb::LinearizableRead {}),
        (Some("bounded"), None) => Mode::Bounded(pb::BoundedRead {
            max_staleness_ms: number(q, "max_staleness_ms")?.unwrap_or(0),
            ..Default::default()
        }),
        (Some(other), _) => {
            return Err(HttpError::invalid(format!(
                "consistency {:?} is not one of local, linearizable, bounded (or pass at_least alone)",
                crate::safe_text::message(other, 64)
            )))
        }
    };
    Ok(Some(pb::ReadConsistency { mode: Some(mode) }))
}

fn number(q: &BTreeMap<String, String>, key: &str) -> Result<Option<u64>, HttpError> {
    q.get(key)
        .map(|v| {
            v.parse()
                .map_err(|_| HttpError::invalid(format!("{key} must be a whole number")))
        })
        .transpose()
}

fn read_meta(m: Option<pb::ReadMeta>) -> Value {
    let m = m.unwrap_or_default();
    let by = m.served_by.unwrap_or_default();
    json!({
        "applied_index": m.applied_index,
        "staleness_upper_bound_ms": m.staleness_upper_bound_ms,
        "consistency": m.consistency,
        "token": m.token,
        "served_by": {"node": by.node, "region": by.region, "role": by.role},
    })
}

fn write_json(w: pb::WriteResponse) -> Json<Value> {
    Json(json!({
        "name": w.name,
        "version": w.version,
        "etag": w.etag,
        "aliases": w.aliases,
        "log_index": w.log_index,
        "token": w.token,
    }))
}

async fn get_value(apis: &Apis, h: &HeaderMap, peer: Peer, name: String, q: &BTreeMap<String, String>) -> Answer {
    use pb::get_secret_value_request::Selector;
    let selector = match (number(q, "version")?, q.get("alias")) {
        (Some(_), Some(_)) => return Err(HttpError::invalid("pass version or alias, not both")),
        (Some(v), None) => Some(Selector::Version(v)),
        (None, Some(a)) => Some(Selector::Alias(a.clone())),
        (None, None) => None,
    };
    let req = pb::GetSecretValueRequest {
        name,
        selector,
        consistency: consistency(q)?,
        break_glass: None,
    };
    let r = apis.secrets.get_secret_value(grpc(h, peer, req)).await?.into_inner();
    let text = std::str::from_utf8(&r.value).ok().map(str::to_string);
    let body = json!({
        "name": r.name,
        "version": r.version,
        "value": text,
        "value_base64": base64::engine::general_purpose::STANDARD.encode(&r.value),
        "aliases": r.aliases,
        "created_at_ms": r.created_at_ms,
        "read": read_meta(r.read),
    });
    Ok(Json(body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    value: Option<String>,
    value_base64: Option<String>,
    #[serde(default)]
    alias: String,
    #[serde(default)]
    must_exist: bool,
}

const PUT_SHAPE: &str = r#"{"value": TEXT} or {"value_base64": B64}, with optional "alias" and "must_exist""#;

async fn put_value(apis: &Apis, h: &HeaderMap, peer: Peer, name: String, body: &[u8]) -> Answer {
    let b: PutBody = parse(body, PUT_SHAPE)?;
    let value = match (b.value, b.value_base64) {
        (Some(v), None) => v.into_bytes(),
        (None, Some(v)) => base64::engine::general_purpose::STANDARD
            .decode(v.as_bytes())
            .map_err(|_| HttpError::invalid("value_base64 is not standard base64"))?,
        _ => {
            return Err(HttpError::invalid(format!(
                "the body must hold one of value and value_base64: {PUT_SHAPE}"
            )))
        }
    };
    let req = pb::PutSecretValueRequest {
        name,
        value,
        alias: b.alias,
        must_exist: b.must_exist,
        ..Default::default()
    };
    Ok(write_json(
        apis.secrets.put_secret_value(grpc(h, peer, req)).await?.into_inner(),
    ))
}

async fn versions(apis: &Apis, h: &HeaderMap, peer: Peer, name: String, q: &BTreeMap<String, String>) -> Answer {
    let req = pb::ListVersionsRequest {
        name,
        consistency: consistency(q)?,
        page_token: q.get("page_token").cloned().unwrap_or_default(),
        limit: number(q, "limit")?.unwrap_or(0).min(u32::MAX as u64) as u32,
    };
    let r = apis.secrets.list_versions(grpc(h, peer, req)).await?.into_inner();
    let versions: Vec<Value> = r
        .versions
        .iter()
        .map(|v| {
            json!({
                "version": v.version,
                "state": pb::VersionState::try_from(v.state)
                    .map(|s| s.as_str_name().trim_start_matches("VERSION_STATE_").to_lowercase())
                    .unwrap_or_default(),
                "aliases": v.aliases,
                "created_at_ms": v.created_at_ms,
                "created_by": v.created_by,
                "size": v.size,
            })
        })
        .collect();
    Ok(Json(json!({
        "name": r.name,
        "versions": versions,
        "next_page_token": r.next_page_token,
        "read": read_meta(r.read),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasBody {
    version: u64,
    expected_version: Option<u64>,
}

async fn move_alias(apis: &Apis, h: &HeaderMap, peer: Peer, name: String, alias: String, body: &[u8]) -> Answer {
    let b: AliasBody = parse(body, r#"{"version": N, "expected_version": M}"#)?;
    let req = pb::MoveAliasRequest {
        name,
        alias,
        version: b.version,
        expected_version: b.expected_version,
    };
    Ok(write_json(
        apis.secrets.move_alias(grpc(h, peer, req)).await?.into_inner(),
    ))
}

async fn list(
    State(apis): State<Apis>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Answer {
    let Query(q) = query.map_err(|e| HttpError::invalid(format!("bad query string: {}", e.body_text())))?;
    let req = pb::ListSecretsRequest {
        prefix: q.get("prefix").cloned().unwrap_or_default(),
        page_token: q.get("page_token").cloned().unwrap_or_default(),
        limit: number(&q, "limit")?.unwrap_or(0).min(u32::MAX as u64) as u32,
        consistency: consistency(&q)?,
    };
    let r = apis.secrets.list_secrets(grpc(&headers, peer, req)).await?.into_inner();
    Ok(Json(json!({
        "names": r.names,
        "next_page_token": r.next_page_token,
        "read": read_meta(r.read),
    })))
}

async fn health(State(apis): State<Apis>, Extension(peer): Extension<Peer>, headers: HeaderMap) -> Answer {
    use pb::cluster_server::Cluster as _;
    let r = apis
        .cluster
        .health(grpc(&headers, peer, pb::HealthRequest {}))
        .await?
        .into_inner();
    Ok(Json(json!({"status": r.status})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(path: &str) -> Target {
        target(&path.parse().unwrap()).unwrap()
    }

    #[test]
    fn a_path_names_a_secret_its_versions_or_one_of_its_aliases_and_percent_2f_keeps_a_slash_in_the_name() {
        assert_eq!(t("/v1/secrets/acme/db"), Target::Secret("acme/db".into()));
        assert_eq!(t("/v1/secrets/acme/db/versions"), Target::Versions("acme/db".into()));
        assert_eq!(
            t("/v1/secrets/acme/db/aliases/CURRENT"),
            Target::Alias("acme/db".into(), "CURRENT".into())
        );
        assert_eq!(
            t("/v1/secrets/acme/db%2Fversions"),
            Target::Secret("acme/db/versions".into())
        );
        assert_eq!(t("/v1/secrets/acme%2Fversions"), Target::Secret("acme/versions".into()));
    }

    #[test]
    fn a_body_that_is_not_the_expected_json_is_refused_without_quoting_it() {
        let Err(e) = parse::<PutBody>(br#"{"value": 5, "x": "fake-secret-text"}"#, PUT_SHAPE) else {
            panic!("a number is not a value");
        };
        assert_eq!(
            (e.status, e.code.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_argument")
        );
        assert!(!e.message.contains("fake-secret"), "{}", e.message);
        let Err(e) = parse::<PutBody>(br#"{"value": "fake-secret-text""#, PUT_SHAPE) else {
            panic!("an unclosed body is not JSON");
        };
        assert!(e.message.contains("is not valid JSON") && !e.message.contains("fake-secret"));
    }
}

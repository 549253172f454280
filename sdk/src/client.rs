//! [`Coffer`]: the client a service holds: typed calls, a cache kept fresh by the watch stream,
//! failover between nodes.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;

use coffer_proto as pb;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cache::count;
use crate::cache::Cache;
use crate::cache::Lookup;
use crate::cache::StatsSnapshot;
use crate::config::Config;
use crate::config::Endpoint;
use crate::endpoints::unit_random;
use crate::endpoints::Nodes;
use crate::error::SdkError;
use crate::value::Secret;
use crate::value::SecretValue;

/// A Coffer client. Cheap to clone; the watch streams stop when the last clone is dropped.
#[derive(Clone)]
pub struct Coffer {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: Config,
    nodes: Arc<Nodes>,
    cache: Arc<Cache>,
    /// Names with a watch stream running (a stream that ends for good takes its name out).
    watching: Arc<Mutex<HashSet<String>>>,
    closed: watch::Sender<bool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.closed.send(true);
    }
}

/// One version as `versions` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    pub version: u64,
    /// "enabled", "disabled" or "destroyed".
    pub state: String,
    pub aliases: Vec<String>,
    pub created_at_ms: u64,
}

impl Coffer {
    /// A client for `cfg` (checked here; nodes are contacted on first use).
    pub fn new(cfg: Config) -> Result<Self, SdkError> {
        let nodes = Arc::new(Nodes::new(&cfg)?);
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                nodes,
                cache: Arc::new(Cache::default()),
                watching: Arc::default(),
                closed: watch::channel(false).0,
            }),
        })
    }

    /// Reads every one of `names` now and fails closed, naming the first that cannot be read:
    /// call it at startup for the secrets a service cannot run without.
    pub async fn require(&self, names: &[&str]) -> Result<(), SdkError> {
        for name in names {
            self.get(name).await.map_err(|e| SdkError::Critical {
                name: name.to_string(),
                source: Box::new(e),
            })?;
        }
        Ok(())
    }

    /// `name`'s CURRENT value: from the cache while fresh, else fetched (one fetch however many
    /// callers ask at once); while no node answers, the cached value up to `max_stale`.
    pub async fn get(&self, name: &str) -> Result<Secret, SdkError> {
        self.get_alias(name, "CURRENT").await
    }

    /// The value `alias` of `name` points at (`PREVIOUS` through a rotation's overlap, say),
    /// cached like [`Coffer::get`].
    pub async fn get_alias(&self, name: &str, alias: &str) -> Result<Secret, SdkError> {
        let cache = &self.inner.cache;
        if let Lookup::Fresh(s) = cache.lookup(name, alias, Instant::now()) {
            count(&cache.stats.hits, "coffer_sdk_cache_hits_total");
            return Ok(s);
        }
        let lock = cache.lock_for(name, alias);
        let _one_fetch = lock.lock().await;
        if let Lookup::Fresh(s) = cache.lookup(name, alias, Instant::now()) {
            count(&cache.stats.hits, "coffer_sdk_cache_hits_total");
            return Ok(s);
        }
        count(&cache.stats.misses, "coffer_sdk_cache_misses_total");
        let selector = pb::get_secret_value_request::Selector::Alias(alias.to_string());
        match self.fetch(name, selector).await {
            Ok(s) => {
                let jitter = 1.0 - self.inner.cfg.ttl_jitter * unit_random();
                cache.store(alias, s.clone(), self.inner.cfg.ttl.mul_f64(jitter), Instant::now());
                self.watch(name, s.applied_index);
                Ok(s)
            }
            Err(e) if !e.retryable() => {
                // A definite answer (gone, denied, disabled): nothing cached may stand in.
                cache.remove(name, Some(alias));
                Err(e)
            }
            Err(e) => {
                count(&cache.stats.refresh_failures, "coffer_sdk_refresh_failures_total");
                match cache.lookup(name, alias, Instant::now()) {
                    Lookup::Stale { secret, fetched_at } => {
                        let age = fetched_at.elapsed();
                        if age > self.inner.cfg.max_stale {
                            return Err(SdkError::MaxStaleExceeded {
                                name: name.to_string(),
                                age_ms: age.as_millis() as u64,
                                max_stale_ms: self.inner.cfg.max_stale.as_millis() as u64,
                                last: e.to_string(),
                            });
                        }
                        count(&cache.stats.stale_serves, "coffer_sdk_stale_serves_total");
                        tracing::warn!(name, age_ms = age.as_millis() as u64, "serving a cached value: {e}");
                        Ok(Secret { stale: true, ..secret })
                    }
                    Lookup::Fresh(s) => Ok(s),
                    Lookup::Revoked | Lookup::Missing => Err(e),
                }
            }
        }
    }

    /// Version `version` of `name`, read now (never cached).
    pub async fn get_version(&self, name: &str, version: u64) -> Result<Secret, SdkError> {
        self.fetch(name, pb::get_secret_value_request::Selector::Version(version))
            .await
    }

    async fn fetch(&self, name: &str, selector: pb::get_secret_value_request::Selector) -> Result<Secret, SdkError> {
        count(&self.inner.cache.stats.fetches, "coffer_sdk_fetches_total");
        let req = pb::GetSecretValueRequest {
            name: name.to_string(),
            selector: Some(selector),
            ..Default::default()
        };
        let (r, _) = self
            .inner
            .nodes
            .call(|mut c| {
                let req = req.clone();
                async move { c.get_secret_value(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        Ok(Secret {
            name: r.name,
            version: r.version,
            applied_index: r.read.map_or(0, |m| m.applied_index),
            value: Arc::new(SecretValue::new(r.value)),
            stale: false,
        })
    }

    /// Adds a version (CURRENT). Retried on other nodes under one request id, so it applies
    /// once however often it is sent. Returns the new version.
    pub async fn put(&self, name: &str, value: &[u8]) -> Result<u64, SdkError> {
        let id = request_id();
        let (r, _) = self
            .inner
            .nodes
            .call(|mut c| {
                let mut req = tonic::Request::new(pb::PutSecretValueRequest {
                    name: name.to_string(),
                    value: value.to_vec(),
                    ..Default::default()
                });
                if let Ok(v) = id.parse() {
                    req.metadata_mut().insert("coffer-request-id", v);
                }
                async move { c.put_secret_value(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        self.inner.cache.invalidate(name, r.log_index, Instant::now());
        Ok(r.version)
    }

    /// Every version of `name`, oldest first (metadata only).
    pub async fn versions(&self, name: &str) -> Result<Vec<VersionInfo>, SdkError> {
        let (r, _) = self
            .inner
            .nodes
            .call(|mut c| {
                let req = pb::ListVersionsRequest {
                    name: name.to_string(),
                    limit: 1000,
                    ..Default::default()
                };
                async move { c.list_versions(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        Ok(r.versions
            .into_iter()
            .map(|v| VersionInfo {
                version: v.version,
                state: pb::VersionState::try_from(v.state)
                    .map(|s| s.as_str_name().trim_start_matches("VERSION_STATE_").to_lowercase())
                    .unwrap_or_default(),
                aliases: v.aliases,
                created_at_ms: v.created_at_ms,
            })
            .collect())
    }

    /// Which endpoint answers a read now (the local region's while it is up).
    pub async fn serving_endpoint(&self) -> Result<Endpoint, SdkError> {
        let (_, e) = self
            .inner
            .nodes
            .call(|mut c| async move {
                c.list_secrets(pb::ListSecretsRequest {
                    prefix: "coffer-sdk-probe/".into(),
                    limit: 1,
                    ..Default::default()
                })
                .await
                .or_else(|s| match s.code() {
                    tonic::Code::PermissionDenied | tonic::Code::InvalidArgument => {
                        Ok(tonic::Response::new(Default::default()))
                    }
                    _ => Err(s),
                })
            })
            .await?;
        Ok(e.clone())
    }

    /// What the cache did so far.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.cache.stats.snapshot()
    }

    /// Starts watching `name` from `after` unless it is watched already.
    fn watch(&self, name: &str, after: u64) {
        if !self.inner.cfg.watch {
            return;
        }
        let watching = self.inner.watching.clone();
        if !watching
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string())
        {
            return;
        }
        let run = crate::watcher::run(
            self.inner.nodes.clone(),
            self.inner.cache.clone(),
            name.to_string(),
            after,
            self.inner.closed.subscribe(),
        );
        let name = name.to_string();
        tokio::spawn(async move {
            run.await;
            watching.lock().unwrap_or_else(|p| p.into_inner()).remove(&name);
        });
    }
}

/// A request id for one write's attempts: 32 random hex digits.
fn request_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::getrandom(&mut b).is_err() {
        // Without randomness the node makes one up per attempt: retries are then only as safe
        // as the node's own.
        return String::new();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

//! KMS providers behind one trait, one KMS per region, and the rules for using them.
//!
//! Every version's data key is wrapped under every region's key ([`KmsSet::wrap_all`]); a region
//! whose KMS does not answer is left out and gets its wrap later from the rewrap job
//! ([`crate::rewrap`]). A read unwraps with the local region's key
//! ([`KmsSet::unwrap_for_read`]) and, only when `kms.fallback = "allow"`, with another region's.
//! Providers: [`local`] (file keyring per region) and [`aws`] (AWS KMS or a compatible service).
//!
//! [`KmsSet`] is the one place that calls providers: it bounds every call with a deadline, keeps
//! each region's health (healthy, last error, unhealthy since), skips a failing region for a
//! short while instead of paying its timeout on every write, and counts calls in the
//! `coffer_kms_calls_total{region,op,result}` metric.

pub mod aws;
pub mod local;
pub mod outage;
pub mod usage;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
// tokio's clock: real time in production, simulated time under turmoil.
use tokio::time::Instant;

use async_trait::async_trait;

use super::DataKey;
use crate::pb;

/// What a wrapped key is bound to besides its region's key: the tenant and the secret name.
/// Providers feed it into their encryption context / AAD, so a wrapped key copied to another
/// secret does not unwrap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyContext {
    pub tenant: String,
    pub name: String,
}

impl KeyContext {
    pub fn for_secret(name: &str) -> Self {
        Self {
            tenant: coffer_model::names::tenant(name).to_string(),
            name: name.to_string(),
        }
    }

    /// Canonical bytes: `tenant \0 name`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.tenant.len() + self.name.len() + 1);
        b.extend_from_slice(self.tenant.as_bytes());
        b.push(0);
        b.extend_from_slice(self.name.as_bytes());
        b
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KmsError {
    /// The KMS did not answer (network, timeout, throttling, its own outage). Retrying later or
    /// elsewhere may work.
    #[error("KMS {provider} for region {region} (key {key}) is unavailable: {reason}")]
    Unavailable {
        region: String,
        provider: String,
        key: String,
        reason: String,
    },
    /// The KMS answered no (wrong key, wrong context, key disabled, access denied).
    #[error("KMS {provider} for region {region} (key {key}) refused: {reason}")]
    Refused {
        region: String,
        provider: String,
        key: String,
        reason: String,
    },
    #[error("no KMS is configured for region {0}")]
    NoRegion(String),
    #[error(
        "this version has no data key wrapped for region {region} yet (the rewrap job adds it once that KMS \
         answers); set kms.fallback = \"allow\" to read it through another region's KMS meanwhile"
    )]
    NoWrap { region: String },
    #[error("no region's KMS could wrap the data key: {0}")]
    NoneAvailable(String),
}

impl KmsError {
    /// Whether another region's KMS might succeed where this failed.
    fn may_fall_back(&self) -> bool {
        matches!(self, KmsError::Unavailable { .. } | KmsError::NoWrap { .. })
    }
}

/// The key new wraps of a region go under. A wrap under any other key (an older key version,
/// or the key an alias pointed at before) is stale: it still unwraps while that key exists, and
/// `coffer kms rewrap` replaces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef {
    pub key_id: String,
    pub key_version: u32,
}

impl KeyRef {
    pub fn matches(&self, w: &pb::WrappedKey) -> bool {
        w.key_id == self.key_id && w.key_version == self.key_version
    }
}

/// One region's KMS key.
#[async_trait]
pub trait Kms: Send + Sync + 'static {
    fn region(&self) -> &str;
    fn provider(&self) -> &'static str;
    /// The key reference as configured (key id, ARN or alias).
    fn key_ref(&self) -> &str;
    /// Wraps `dek` under this region's current key.
    async fn wrap(&self, dek: &DataKey, ctx: &KeyContext) -> Result<pb::WrappedKey, KmsError>;
    /// Unwraps a key this provider wrapped (under any key it still holds).
    async fn unwrap(&self, wrapped: &pb::WrappedKey, ctx: &KeyContext) -> Result<DataKey, KmsError>;
    /// The key new wraps go under now. Asks the KMS where it has to, so it doubles as a
    /// health probe.
    async fn current_key(&self) -> Result<KeyRef, KmsError>;
}

/// A region's KMS health as this node last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionHealth {
    pub region: String,
    pub provider: String,
    pub key: String,
    pub healthy: bool,
    pub last_error: String,
    /// Wall-clock ms of the first failure of the current outage; 0 while healthy.
    pub unhealthy_since_ms: u64,
}

#[derive(Default)]
struct Health {
    last_error: Option<String>,
    unhealthy_since_ms: u64,
    last_failure: Option<Instant>,
}

struct Region {
    kms: Arc<dyn Kms>,
    health: Mutex<Health>,
}

/// How calls to the KMS of every region are made.
#[derive(Debug, Clone)]
pub struct KmsPolicy {
    /// Deadline of one call, retries included.
    pub call_timeout: Duration,
    /// After a failure, skip a region's KMS for this long (writes leave its wrap missing,
    /// reads go to the fallback) instead of paying its timeout on every request.
    pub retry_unhealthy_after: Duration,
    /// Reads may unwrap with another region's KMS when the local one cannot.
    pub fallback: bool,
}

impl Default for KmsPolicy {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(3),
            retry_unhealthy_after: Duration::from_secs(5),
            fallback: false,
        }
    }
}

/// Wraps of one data key: those made, and the regions left out.
pub struct Wraps {
    pub wraps: Vec<pb::WrappedKey>,
    pub missing: Vec<String>,
}

/// The KMS of every region, and which one is local.
pub struct KmsSet {
    local_region: String,
    regions: BTreeMap<String, Region>,
    policy: KmsPolicy,
    /// Outages a drill injects: calls to such a region fail before reaching its provider.
    outages: Arc<outage::Outages>,
    /// Where reads got their data keys (what a drill's report counts).
    usage: usage::KmsUsage,
}

#[derive(Clone, Copy)]
enum Op {
    Wrap,
    Unwrap,
    Probe,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Wrap => "wrap",
            Op::Unwrap => "unwrap",
            Op::Probe => "describe",
        }
    }
}

impl KmsSet {
    pub fn new(local_region: &str, kms: Vec<Arc<dyn Kms>>, policy: KmsPolicy) -> Result<Self, KmsError> {
        let regions: BTreeMap<String, Region> = kms
            .into_iter()
            .map(|k| {
                (
                    k.region().to_string(),
                    Region {
                        kms: k,
                        health: Mutex::new(Health::default()),
                    },
                )
            })
            .collect();
        if !regions.contains_key(local_region) {
            return Err(KmsError::NoRegion(local_region.to_string()));
        }
        Ok(Self {
            local_region: local_region.to_string(),
            regions,
            policy,
            outages: Arc::default(),
            usage: usage::KmsUsage::default(),
        })
    }

    /// Where this node's reads got their data keys, since it started.
    pub fn usage(&self) -> &usage::KmsUsage {
        &self.usage
    }

    /// The drill outages this set obeys.
    pub fn outages(&self) -> &Arc<outage::Outages> {
        &self.outages
    }

    pub fn local_region(&self) -> &str {
        &self.local_region
    }

    pub fn region_names(&self) -> impl Iterator<Item = &str> {
        self.regions.keys().map(String::as_str)
    }

    pub fn contains(&self, region: &str) -> bool {
        self.regions.contains_key(region)
    }

    fn region(&self, name: &str) -> Result<&Region, KmsError> {
        self.regions
            .get(name)
            .ok_or_else(|| KmsError::NoRegion(name.to_string()))
    }

    /// Whether a region failed so recently that it is skipped for now.
    fn resting(&self, r: &Region) -> bool {
        let h = r.health.lock().unwrap_or_else(|e| e.into_inner());
        h.last_failure
            .is_some_and(|t| t.elapsed() < self.policy.retry_unhealthy_after)
    }

    /// Runs one provider call under the deadline, counting it and updating health.
    async fn call<T>(&self, r: &Region, op: Op, f: impl Future<Output = Result<T, KmsError>>) -> Result<T, KmsError> {
        let kms = &r.kms;
        let started = std::time::Instant::now();
        let unavailable = |reason: String| KmsError::Unavailable {
            region: kms.region().to_string(),
            provider: kms.provider().to_string(),
            key: kms.key_ref().to_string(),
            reason,
        };
        let result = match self.outages.refusal(kms.region()) {
            Some(why) => Err(unavailable(why)),
            None => match tokio::time::timeout(self.policy.call_timeout, f).await {
                Ok(r) => r,
                Err(_) => Err(unavailable(format!(
                    "no answer within {} ms",
                    self.policy.call_timeout.as_millis()
                ))),
            },
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(KmsError::Unavailable { .. }) => "unavailable",
            Err(_) => "refused",
        };
        metrics::counter!("coffer_kms_calls_total", "region" => kms.region().to_string(), "op" => op.name(), "result" => outcome)
            .increment(1);
        if outcome == "unavailable" {
            self.usage.unavailable();
        }
        metrics::histogram!("coffer_kms_call_seconds", "region" => kms.region().to_string(), "op" => op.name())
            .record(started.elapsed().as_secs_f64());
        // A refused unwrap says something about that wrapped key, not about the KMS.
        let failed = match (&result, op) {
            (Ok(_), _) => None,
            (Err(e @ KmsError::Refused { .. }), Op::Unwrap) => {
                tracing::warn!(region = kms.region(), "KMS refused to unwrap a data key: {e}");
                None
            }
            (Err(e), _) => Some(e.to_string()),
        };
        let mut h = r.health.lock().unwrap_or_else(|e| e.into_inner());
        match failed {
            Some(e) => {
                if h.last_error.is_none() {
                    tracing::warn!(region = kms.region(), "KMS became unhealthy: {e}");
                    h.unhealthy_since_ms = crate::time::now_ms();
                }
                h.last_error = Some(e);
                h.last_failure = Some(Instant::now());
            }
            None if result.is_ok() => {
                if h.last_error.is_some() {
                    tracing::info!(region = kms.region(), "KMS is healthy again");
                }
                *h = Health::default();
            }
            None => {}
        }
        result
    }

    /// Wraps `dek` under every region's key, all regions at once. A region whose KMS fails (or
    /// failed moments ago) is left out and named in [`Wraps::missing`]; fails only when no
    /// region could wrap it, since then nothing could ever unwrap it.
    pub async fn wrap_all(&self, dek: &DataKey, ctx: &KeyContext) -> Result<Wraps, KmsError> {
        let results = futures::future::join_all(self.regions.values().map(|r| async move {
            if self.resting(r) {
                return Err(format!("{}: skipped, failed moments ago", r.kms.region()));
            }
            self.call(r, Op::Wrap, r.kms.wrap(dek, ctx))
                .await
                .map_err(|e| e.to_string())
        }))
        .await;
        let mut out = Wraps {
            wraps: Vec::new(),
            missing: Vec::new(),
        };
        let mut errors = Vec::new();
        for (region, res) in self.regions.keys().zip(results) {
            match res {
                Ok(w) => out.wraps.push(w),
                Err(e) => {
                    metrics::counter!("coffer_kms_wraps_missing_at_write_total", "region" => region.clone())
                        .increment(1);
                    out.missing.push(region.clone());
                    errors.push(e);
                }
            }
        }
        if out.wraps.is_empty() {
            return Err(KmsError::NoneAvailable(errors.join("; ")));
        }
        Ok(out)
    }

    /// Wraps `dek` under one region's current key (the rewrap job).
    pub async fn wrap_for(&self, region: &str, dek: &DataKey, ctx: &KeyContext) -> Result<pb::WrappedKey, KmsError> {
        let r = self.region(region)?;
        self.call(r, Op::Wrap, r.kms.wrap(dek, ctx)).await
    }

    async fn unwrap_in(&self, region: &str, env: &pb::Envelope, ctx: &KeyContext) -> Result<DataKey, KmsError> {
        let r = self.region(region)?;
        let wrapped = env
            .wrapped_keys
            .iter()
            .find(|w| w.region == region)
            .ok_or_else(|| KmsError::NoWrap {
                region: region.to_string(),
            })?;
        if self.resting(r) {
            let h = r.health.lock().unwrap_or_else(|e| e.into_inner());
            return Err(KmsError::Unavailable {
                region: region.to_string(),
                provider: r.kms.provider().to_string(),
                key: r.kms.key_ref().to_string(),
                reason: h.last_error.clone().unwrap_or_else(|| "failing".into()),
            });
        }
        self.call(r, Op::Unwrap, r.kms.unwrap(wrapped, ctx)).await
    }

    /// Unwraps for a read: the local region's KMS; when it cannot (down, or no wrap for this
    /// region yet) and the policy allows it, another region's, counted in
    /// `coffer_kms_fallback_total`. Otherwise the local error, naming the region and key.
    pub async fn unwrap_for_read(&self, env: &pb::Envelope, ctx: &KeyContext) -> Result<DataKey, KmsError> {
        match self.unwrap_in(&self.local_region, env, ctx).await {
            Ok(k) => Ok(k),
            Err(e) if e.may_fall_back() && self.policy.fallback => {
                for other in self.regions.keys().filter(|r| **r != self.local_region) {
                    if let Ok(k) = self.unwrap_in(other, env, ctx).await {
                        metrics::counter!("coffer_kms_fallback_total", "region" => self.local_region.clone(), "to" => other.clone())
                            .increment(1);
                        self.usage.fallback();
                        tracing::info!(to = %other, "unwrapped through another region's KMS: {e}");
                        return Ok(k);
                    }
                }
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Unwraps with any region's KMS, the local one first (the rewrap job, which has to reach
    /// the data key to wrap it for a region that lacks it).
    pub async fn unwrap_any(&self, env: &pb::Envelope, ctx: &KeyContext) -> Result<DataKey, KmsError> {
        let mut first = None;
        let order = std::iter::once(self.local_region.as_str()).chain(
            self.regions
                .keys()
                .map(String::as_str)
                .filter(|r| *r != self.local_region),
        );
        for region in order {
            match self.unwrap_in(region, env, ctx).await {
                Ok(k) => return Ok(k),
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        Err(first.unwrap_or_else(|| KmsError::NoRegion(self.local_region.clone())))
    }

    /// The key a region wraps under now; also a health probe of that region's KMS.
    pub async fn current_key(&self, region: &str) -> Result<KeyRef, KmsError> {
        let r = self.region(region)?;
        self.call(r, Op::Probe, r.kms.current_key()).await
    }

    /// Probes every region at once (for status), refreshing their health.
    pub async fn probe_all(&self) -> BTreeMap<String, Result<KeyRef, KmsError>> {
        let results = futures::future::join_all(
            self.regions
                .values()
                .map(|r| self.call(r, Op::Probe, r.kms.current_key())),
        )
        .await;
        self.regions.keys().cloned().zip(results).collect()
    }

    /// Whether a region failed moments ago (its work waits).
    pub fn is_resting(&self, region: &str) -> bool {
        self.regions.get(region).is_some_and(|r| self.resting(r))
    }

    pub fn health(&self) -> Vec<RegionHealth> {
        self.regions
            .values()
            .map(|r| {
                let h = r.health.lock().unwrap_or_else(|e| e.into_inner());
                RegionHealth {
                    region: r.kms.region().to_string(),
                    provider: r.kms.provider().to_string(),
                    key: r.kms.key_ref().to_string(),
                    healthy: h.last_error.is_none(),
                    last_error: h.last_error.clone().unwrap_or_default(),
                    unhealthy_since_ms: h.unhealthy_since_ms,
                }
            })
            .collect()
    }
}

/// A KMS for tests: wraps by XOR with a per-region byte, and can be switched off.
#[cfg(test)]
pub mod fake {
    use std::sync::atomic::AtomicBool;
    use std::sync::atomic::AtomicU32;
    use std::sync::atomic::Ordering;

    use super::*;

    pub struct FakeKms {
        pub region: String,
        pub down: AtomicBool,
        pub calls: AtomicU32,
    }

    impl FakeKms {
        pub fn new(region: &str) -> Arc<Self> {
            Arc::new(Self {
                region: region.into(),
                down: AtomicBool::new(false),
                calls: AtomicU32::new(0),
            })
        }

        fn check(&self) -> Result<(), KmsError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(KmsError::Unavailable {
                    region: self.region.clone(),
                    provider: "fake".into(),
                    key: format!("fake/{}", self.region),
                    reason: "switched off".into(),
                });
            }
            Ok(())
        }

        fn pad(&self) -> u8 {
            self.region.bytes().fold(0x5a, |a, b| a ^ b)
        }
    }

    #[async_trait]
    impl Kms for FakeKms {
        fn region(&self) -> &str {
            &self.region
        }
        fn provider(&self) -> &'static str {
            "fake"
        }
        fn key_ref(&self) -> &str {
            "fake"
        }
        async fn wrap(&self, dek: &DataKey, _ctx: &KeyContext) -> Result<pb::WrappedKey, KmsError> {
            self.check()?;
            Ok(pb::WrappedKey {
                region: self.region.clone(),
                provider: "fake".into(),
                key_id: "fake".into(),
                key_version: 1,
                blob: dek.expose().iter().map(|b| b ^ self.pad()).collect(),
            })
        }
        async fn unwrap(&self, w: &pb::WrappedKey, _ctx: &KeyContext) -> Result<DataKey, KmsError> {
            self.check()?;
            let k: Vec<u8> = w.blob.iter().map(|b| b ^ self.pad()).collect();
            Ok(DataKey::from_bytes(&k).expect("32 bytes"))
        }
        async fn current_key(&self) -> Result<KeyRef, KmsError> {
            self.check()?;
            Ok(KeyRef {
                key_id: "fake".into(),
                key_version: 1,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::fake::FakeKms;
    use super::*;

    fn set(fallback: bool) -> (KmsSet, Arc<FakeKms>, Arc<FakeKms>) {
        let us = FakeKms::new("us");
        let eu = FakeKms::new("eu");
        let policy = KmsPolicy {
            fallback,
            ..KmsPolicy::default()
        };
        let s = KmsSet::new("eu", vec![us.clone() as Arc<dyn Kms>, eu.clone()], policy).unwrap();
        (s, us, eu)
    }

    #[tokio::test]
    async fn a_region_down_at_write_is_left_out_and_reads_fall_back_only_when_allowed() {
        let ctx = KeyContext::for_secret("acme/a");
        let dek = DataKey::generate().unwrap();
        for fallback in [false, true] {
            let (s, _us, eu) = set(fallback);
            eu.down.store(true, Ordering::SeqCst);
            let w = s.wrap_all(&dek, &ctx).await.unwrap();
            assert_eq!(w.missing, ["eu"]);
            assert_eq!(w.wraps.len(), 1);
            let env = pb::Envelope {
                wrapped_keys: w.wraps,
                ..Default::default()
            };
            let health = s.health();
            let eu_health = health.iter().find(|h| h.region == "eu").unwrap();
            assert!(!eu_health.healthy && eu_health.unhealthy_since_ms > 0);
            assert!(eu_health.last_error.contains("switched off"));
            let read = s.unwrap_for_read(&env, &ctx).await;
            if fallback {
                assert_eq!(read.unwrap().expose(), dek.expose());
            } else {
                let e = read.unwrap_err();
                assert!(matches!(e, KmsError::NoWrap { ref region } if region == "eu"), "{e}");
                assert!(e.to_string().contains("kms.fallback"), "{e}");
            }
        }
    }

    #[tokio::test]
    async fn a_failed_region_is_skipped_for_a_while_and_no_region_means_no_write() {
        let ctx = KeyContext::for_secret("acme/a");
        let dek = DataKey::generate().unwrap();
        let (s, us, eu) = set(false);
        us.down.store(true, Ordering::SeqCst);
        s.wrap_all(&dek, &ctx).await.unwrap();
        let calls = us.calls.load(Ordering::SeqCst);
        s.wrap_all(&dek, &ctx).await.unwrap();
        assert_eq!(us.calls.load(Ordering::SeqCst), calls, "resting region not called");
        eu.down.store(true, Ordering::SeqCst);
        let e = s.wrap_all(&DataKey::generate().unwrap(), &ctx).await.err().unwrap();
        assert!(matches!(e, KmsError::NoneAvailable(_)), "{e}");
        // Recovery is seen by the next call that gets through.
        eu.down.store(false, Ordering::SeqCst);
        let s2 = set(false).0;
        assert!(s2.current_key("eu").await.is_ok());
        assert!(s2.health().iter().all(|h| h.healthy));
    }
}

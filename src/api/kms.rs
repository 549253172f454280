//! The `coffer.v1.Kms` service: each region's KMS health as the answering node sees it, the
//! versions still missing each region's wrap, and on-demand rewrap.

use std::collections::BTreeMap;
use std::sync::Arc;

use tonic::Request;
use tonic::Response;
use tonic::Status;

use crate::authz::Action;
use crate::crypto::kms::KeyRef;
use crate::error::ApiError;
use crate::pb;
use crate::rewrap;
use crate::service::Service;

pub struct KmsApi {
    service: Arc<Service>,
}

impl KmsApi {
    pub fn new(service: Arc<Service>) -> Self {
        Self { service }
    }

    /// Probes every region's KMS (so health is current) and counts, from this node's replica,
    /// versions missing each region's wrap and wraps under a key other than the region's
    /// current one (known only for regions whose KMS answered the probe).
    async fn regions(&self) -> (Vec<pb::KmsRegionStatus>, BTreeMap<String, rewrap::RegionCensus>) {
        let kms = self.service.vault.kms();
        let current: BTreeMap<String, KeyRef> = kms
            .probe_all()
            .await
            .into_iter()
            .filter_map(|(r, k)| Some((r, k.ok()?)))
            .collect();
        let names: Vec<String> = kms.region_names().map(str::to_string).collect();
        let counts = rewrap::census(&self.service.raft, &names, &current).await;
        let regions = kms
            .health()
            .into_iter()
            .map(|h| pb::KmsRegionStatus {
                versions_missing_wrap: counts.get(&h.region).map(|c| c.missing).unwrap_or(0),
                region: h.region,
                provider: h.provider,
                key: h.key,
                healthy: h.healthy,
                last_error: h.last_error,
                unhealthy_since_ms: h.unhealthy_since_ms,
            })
            .collect();
        (regions, counts)
    }
}

#[tonic::async_trait]
impl pb::kms_server::Kms for KmsApi {
    async fn status(&self, req: Request<pb::KmsStatusRequest>) -> Result<Response<pb::KmsStatusResponse>, Status> {
        self.service.grant(&req, Action::ClusterAdmin, "kms").await?;
        Ok(Response::new(pb::KmsStatusResponse {
            regions: self.regions().await.0,
            served_by: Some(
                self.service
                    .served_by(self.service.raft.role_and_membership().0.as_str()),
            ),
        }))
    }

    async fn rewrap(&self, req: Request<pb::RewrapRequest>) -> Result<Response<pb::RewrapResponse>, Status> {
        self.service.grant(&req, Action::ClusterAdmin, "kms").await?;
        let region = req.into_inner().region;
        let kms = self.service.vault.kms();
        if !region.is_empty() && !kms.contains(&region) {
            let known: Vec<&str> = kms.region_names().collect();
            return Err(ApiError::invalid(format!(
                "unknown region {region:?}; this cluster's regions are {}",
                known.join(", ")
            ))
            .into());
        }
        let opts = rewrap::PassOptions {
            regions: (!region.is_empty()).then(|| vec![region.clone()]),
            replace_stale: true,
        };
        let report = rewrap::pass(&self.service.raft, &self.service.vault, &opts).await;
        let (regions, counts) = self.regions().await;
        // Wraps left under an older key, in the regions this rewrap covered.
        let stale_after = counts
            .iter()
            .filter(|(r, _)| region.is_empty() || **r == region)
            .map(|(_, c)| c.stale)
            .sum();
        let mut failures = report.failures;
        if report.failures_not_shown > 0 {
            failures.push(format!("… and {} more failures", report.failures_not_shown));
        }
        Ok(Response::new(pb::RewrapResponse {
            checked: report.checked,
            added: report.added,
            replaced: report.replaced,
            failures,
            regions,
            stale_after,
        }))
    }
}

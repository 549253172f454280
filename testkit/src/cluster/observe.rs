//! Clients, health, status, metrics and the leader of a running cluster.

use std::time::Duration;
use std::time::Instant;

use coffer::client::Client;
use coffer::pb;

use super::TestCluster;
use crate::net::http_get;

impl TestCluster {
    /// Node `i`'s Prometheus metrics text (the spec must ask for metrics).
    pub async fn metrics(&self, i: usize) -> String {
        let addr = self.metrics.get(&i).expect("ClusterSpec.metrics is off");
        http_get(addr.parse().expect("addr"), "/metrics")
            .await
            .unwrap_or_else(|e| panic!("metrics of node {i}: {e}"))
    }

    pub async fn client(&self, i: usize) -> Client {
        self.client_with(i, Some(self.token())).await
    }

    pub async fn client_with(&self, i: usize, token: Option<&str>) -> Client {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Client::connect_with(&self.file.nodes[i].api, token, self.client_tls().as_ref()).await {
                Ok(c) => return c,
                Err(e) if Instant::now() > deadline => panic!("cannot connect to node {i}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// A root-token client of node `i`, if it accepts a connection now (no retries: callers
    /// poll).
    async fn root_client_once(&self, i: usize) -> Option<Client> {
        Client::connect_with(&self.file.nodes[i].api, Some(self.token()), self.client_tls().as_ref())
            .await
            .ok()
    }

    /// Node `i`'s health report, if it answers. Asked with the root token, so a member's report
    /// carries the node and its Raft state (anonymous callers get the status alone).
    pub async fn health(&self, i: usize) -> Option<pb::HealthResponse> {
        self.root_client_once(i)
            .await?
            .cluster
            .clone()
            .health(pb::HealthRequest {})
            .await
            .ok()
            .map(|r| r.into_inner())
    }

    /// Cluster status as seen by node `i`, if it answers.
    pub async fn status(&self, i: usize) -> Option<pb::ClusterStatusResponse> {
        self.root_client_once(i)
            .await?
            .cluster
            .clone()
            .status(pb::ClusterStatusRequest {})
            .await
            .ok()
            .map(|r| r.into_inner())
    }

    /// Waits until every running member agrees on a live leader and the cluster is
    /// bootstrapped. Returns the leader's index.
    pub async fn wait_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let mut leaders = Vec::new();
            for i in 0..self.file.nodes.len() {
                if self.children[i].is_none() {
                    continue;
                }
                match self.status(i).await {
                    Some(s) if !s.cluster_id.is_empty() => leaders.push(s.leader_id),
                    // A spare that has not joined has no cluster to report.
                    Some(_) if i >= self.initial => {}
                    _ => leaders.push(0),
                }
            }
            if let Some(&l) = leaders.first() {
                let alive = |id: u64| self.children.get((id - 1) as usize).is_some_and(|c| c.is_some());
                if l != 0 && leaders.iter().all(|x| *x == l) && alive(l) {
                    return (l - 1) as usize;
                }
            }
            if Instant::now() > deadline {
                let tails: String = (0..self.file.nodes.len())
                    .filter(|i| self.children[*i].is_some())
                    .map(|i| {
                        let log = self.log(i);
                        let lines: Vec<&str> = log.lines().collect();
                        let tail = lines[lines.len().saturating_sub(8)..].join("\n    ");
                        format!("\n  node {} log tail:\n    {tail}", i + 1)
                    })
                    .collect();
                panic!("no agreed leader within {timeout:?}: {leaders:?}{tails}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

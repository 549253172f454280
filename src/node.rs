//! A Coffer node: storage, Raft, KMS and the gRPC services wired together.
//!
//! [`serve`] is generic over the listeners' incoming connection streams and the peer
//! [`Connector`], so tests and simulations plug in their own transport with no branches here
//! (the libsql pattern). [`run`] is the production entry: TCP listeners and TCP peers, over
//! TLS (mutual TLS between nodes) unless the config says `network.plaintext = true`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use coffer_raft::network::Connector;
use coffer_raft::network::TcpConnector;
use coffer_raft::node::RaftNode;
use coffer_raft::peer_auth::ClusterKey;
use coffer_raft::peer_auth::PeerCredential;
use coffer_raft::storage::LogBackend;
use coffer_raft::storage::SmBackend;
use futures::Stream;
use tokio::io::AsyncRead;
use tokio::io::AsyncWrite;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::Connected;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic::transport::ServerTlsConfig;

use crate::api::access::AccessApi;
use crate::api::cluster::ClusterApi;
use crate::api::kms::KmsApi;
use crate::api::secrets::SecretsApi;
use crate::service::Service;

use crate::audit::file::AuditFile;
use crate::audit::file::AuditOptions;
use crate::audit::AuditSink;
use crate::authz::AnonymousLimit;
use crate::authz::Seam;
use crate::config::ServerConfig;
use crate::crypto::kms::aws::AwsKms;
use crate::crypto::kms::local::LocalKms;
use crate::crypto::kms::Kms;
use crate::crypto::kms::KmsSet;
use crate::crypto::vault::Vault;
use crate::pb;
use crate::peer_guard::PeerGuard;
use crate::peer_guard::PeerSecurity;

/// Largest request any public service accepts (a 64 KiB value with its metadata, or a 64 KiB
/// policy document, fits easily); larger ones fail with `OUT_OF_RANGE` before they are decoded.
const MAX_API_MESSAGE_BYTES: usize = 1024 * 1024;

/// Largest header list of a public request (its token, request id and consistency token
/// included); larger ones are refused by HTTP/2 with status 431 before any handler runs.
const MAX_API_HEADER_BYTES: u32 = 64 * 1024;

/// What a node is built from besides its config: storage, KMS providers, peer transport and
/// audit sink. Production takes them from the config ([`NodeParts::from_config`]); simulations
/// pass memory storage, simulated KMS hosts and turmoil sockets.
pub struct NodeParts {
    pub log: Arc<dyn LogBackend>,
    pub sm: Arc<dyn SmBackend>,
    /// One provider per region of `cfg.regions`.
    pub kms: Vec<Arc<dyn Kms>>,
    pub connector: Arc<dyn Connector>,
    pub audit: Arc<dyn AuditSink>,
    /// TLS of the API port; `None` = plaintext.
    pub api_tls: Option<ServerTlsConfig>,
    /// How the peer port admits callers: node certificates (TLS) or proofs under the cluster
    /// key (plaintext). There is no open peer port.
    pub peer: PeerSecurity,
    /// Called once the node is up, with its Raft handle (simulations observe nodes through it).
    pub on_start: Option<OnStart>,
    /// How the rotation scheduler calls the owners' rotators (the hook strategy).
    pub rotators: Arc<dyn crate::rotation::hook::Rotators>,
    /// The HTTP/JSON API's port, when the node serves one (`node.http_addr`).
    pub http: Option<HttpPort>,
}

/// A bound HTTP API port and its TLS (`None` = plaintext).
pub struct HttpPort {
    pub listener: TcpListener,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// See [`NodeParts::on_start`].
pub type OnStart = Box<dyn FnOnce(&RaftNode) + Send>;

impl NodeParts {
    /// RocksDB in `node.data_dir`, the configured KMS providers, TCP peers (mutual TLS when the
    /// config has `[tls]`), the audit file.
    pub async fn from_config(cfg: &ServerConfig) -> anyhow::Result<Self> {
        let kms = build_kms(cfg).await?;
        let (log, sm) = coffer_raft::rocks::open_for_node(&cfg.node.data_dir, cfg.node.id)
            .with_context(|| format!("cannot open storage in {}", cfg.node.data_dir.display()))?;
        crate::node_metrics::export_log_stats(log.stats());
        let tls = cfg.tls_material()?;
        let (connector, peer): (Arc<dyn Connector>, _) = match &tls {
            Some(m) => (Arc::new(m.connector()), PeerSecurity::Tls(m.peer_server())),
            None => {
                let path = cfg
                    .network
                    .peer_key_file
                    .as_deref()
                    .context("network.plaintext = true needs network.peer_key_file (coffer dev writes one)")?;
                let key = Arc::new(ClusterKey::load(path)?);
                let credential = PeerCredential::cluster_key(&key, cfg.node.id);
                (Arc::new(TcpConnector::new(credential)), PeerSecurity::ClusterKey(key))
            }
        };
        Ok(Self {
            log: Arc::new(log),
            sm: Arc::new(sm),
            kms,
            connector,
            api_tls: tls.as_ref().map(|m| m.api_server()),
            peer,
            audit: Arc::new(AuditFile::open(
                cfg.audit_path(),
                AuditOptions {
                    sync: cfg.audit_sync().map_err(anyhow::Error::msg)?,
                    write_timeout: cfg.audit_write_timeout(),
                    max_file_bytes: cfg
                        .audit
                        .max_file_bytes
                        .unwrap_or(crate::audit::file::DEFAULT_MAX_FILE_BYTES),
                    retain_files: cfg
                        .audit
                        .retain_files
                        .unwrap_or(crate::audit::file::DEFAULT_RETAIN_FILES),
                    ..AuditOptions::default()
                },
            )),
            on_start: None,
            rotators: Arc::new(https_rotators(cfg)?),
            http: match cfg.node.http_addr {
                Some(addr) => Some(HttpPort {
                    listener: TcpListener::bind(addr).await.with_context(|| {
                        format!("cannot listen on node.http_addr {addr} (is another node using it?)")
                    })?,
                    tls: match &tls {
                        Some(m) => Some(tokio_rustls::TlsAcceptor::from(m.http_server()?)),
                        None => None,
                    },
                }),
                None => None,
            },
        })
    }
}

/// The rotators' client: the system's roots and `rotation.hook_ca_file`.
fn https_rotators(cfg: &ServerConfig) -> anyhow::Result<crate::rotation::hook::HttpsRotators> {
    let ca = match &cfg.rotation.hook_ca_file {
        Some(f) => Some(std::fs::read(f).with_context(|| format!("rotation.hook_ca_file {}", f.display()))?),
        None => None,
    };
    crate::rotation::hook::HttpsRotators::new(ca.as_deref(), cfg.hook_timeout()).map_err(anyhow::Error::msg)
}

/// Runs a node with TCP listeners until `shutdown` resolves.
pub async fn run(cfg: ServerConfig, shutdown: impl std::future::Future<Output = ()> + Send) -> anyhow::Result<()> {
    let bind = |addr| async move {
        TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (is another node using it?)"))
    };
    refuse_exposed_plaintext(&cfg)?;
    let tightened = crate::private_files::make_private(&cfg.node.data_dir)
        .with_context(|| format!("cannot make {} private (mode 0700)", cfg.node.data_dir.display()))?;
    if tightened > 0 {
        tracing::warn!(
            "took group and other permissions off {tightened} file(s) and directories under {}",
            cfg.node.data_dir.display()
        );
    }
    let api = bind(cfg.node.api_addr).await?;
    let raft = bind(cfg.node.raft_addr).await?;
    if let Some(addr) = cfg.node.metrics_addr {
        crate::node_metrics::start(addr, &[("node", &cfg.node.name), ("node_region", &cfg.node.region)])?;
    }
    let parts = NodeParts::from_config(&cfg).await?;
    serve(
        cfg,
        parts,
        // Without TCP_NODELAY, Nagle holds back the second write of an answer until the peer's
        // delayed ACK (40 ms here): one request at a time would wait 40 ms each.
        TcpIncoming::from(api).with_nodelay(Some(true)),
        TcpIncoming::from(raft).with_nodelay(Some(true)),
        shutdown,
    )
    .await
}

/// Plaintext is for loopback only (`coffer dev`, tests): anywhere else anyone on the network
/// could read and forge the traffic, so the node refuses to start.
fn refuse_exposed_plaintext(cfg: &ServerConfig) -> anyhow::Result<()> {
    if !cfg.network.plaintext {
        return Ok(());
    }
    let http = cfg.node.http_addr.map(|a| ("http_addr", a));
    for (what, addr) in [("api_addr", cfg.node.api_addr), ("raft_addr", cfg.node.raft_addr)]
        .into_iter()
        .chain(http)
    {
        anyhow::ensure!(
            addr.ip().is_loopback(),
            "network.plaintext = true is for loopback only, but node.{what} is {addr}: \
             configure [tls] (see deploy/README.md) or listen on 127.0.0.1"
        );
    }
    Ok(())
}

async fn build_kms(cfg: &ServerConfig) -> anyhow::Result<Vec<Arc<dyn Kms>>> {
    let policy = cfg.kms.policy();
    let mut list: Vec<Arc<dyn Kms>> = Vec::new();
    for r in &cfg.regions {
        if let Some(aws) = r.aws_settings(policy.call_timeout) {
            let key = r.key_id.as_deref().unwrap_or_default();
            list.push(Arc::new(AwsKms::new(&r.name, key, &aws).await));
            continue;
        }
        let dir = cfg
            .kms
            .local_keyring_dir
            .as_deref()
            .context("kms.local_keyring_dir is required for the local KMS provider")?;
        list.push(Arc::new(LocalKms::open(dir, &r.name, cfg.kms.create_missing_keyrings)?));
    }
    Ok(list)
}

/// Runs a node over the given connection streams until `shutdown` resolves.
pub async fn serve<I, IO, IE>(
    cfg: ServerConfig,
    parts: NodeParts,
    api_incoming: I,
    raft_incoming: I,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()>
where
    I: Stream<Item = Result<IO, IE>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let me = cfg.node_info();
    let NodeParts {
        log,
        sm,
        kms,
        connector,
        audit,
        api_tls,
        peer,
        on_start,
        rotators,
        http,
    } = parts;
    let kms = Arc::new(KmsSet::new(&cfg.node.region, kms, cfg.kms.policy())?);
    let raft = RaftNode::start(
        me.id,
        &cfg.raft_settings(),
        log,
        sm.clone(),
        Arc::new(coffer_model::app::SecretsModel),
        connector,
    )
    .await?;
    crate::node_metrics::export_batch_stats(raft.clone());

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let service = Arc::new(Service {
        seam: Seam::new(raft.reader().clone(), audit.clone(), me.name.clone(), me.region.clone()).with_anonymous_limit(
            AnonymousLimit::new(cfg.limits.anonymous_requests_per_sec, cfg.limits.anonymous_burst),
        ),
        audit,
        vault: Vault::new(
            kms.clone(),
            Duration::from_secs(cfg.kms.dek_cache_ttl_secs),
            cfg.kms.dek_cache_capacity,
        ),
        raft: raft.clone(),
        me: me.clone(),
        write_timeout: cfg.write_timeout(),
        token_key: tokio::sync::OnceCell::new(),
        usage: Arc::new(crate::usage::book::UsageBook::new(crate::time::now_ms())),
        watches: Arc::new(tokio::sync::Semaphore::new(crate::service::watch::MAX_WATCHES)),
        stopping: stop_rx.clone(),
        ready_max_staleness_ms: cfg.ready_max_staleness_ms(),
        faults: Arc::new(crate::drill::faults::NodeFaults::new(
            raft.fence().clone(),
            kms.outages().clone(),
            std::env::var(crate::drill::faults::TEST_HOOKS_ENV).is_ok_and(|v| v == "1"),
        )),
    });

    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let peer_guard = crate::drill::gate::FencedPeerGuard {
        fence: raft.fence().clone(),
        guard: PeerGuard::for_security(&peer),
    };
    let peer_tls = match peer {
        PeerSecurity::Tls(t) => Some(t),
        PeerSecurity::ClusterKey(_) => None,
    };
    let peer_server = tokio::spawn(
        with_tls(Server::builder(), peer_tls, "peer")?
            .add_service(InterceptedService::new(
                coffer_raft::peer_service::peer_server(raft.clone()),
                peer_guard.clone(),
            ))
            .add_service(InterceptedService::new(
                crate::usage::peer::TelemetryPeer::server(service.usage.clone()),
                peer_guard,
            ))
            .serve_with_incoming_shutdown(raft_incoming, stopped(stop_rx.clone())),
    );
    if let Some(port) = http {
        let apis = crate::http::secrets::Apis {
            secrets: Arc::new(SecretsApi::new(service.clone())),
            cluster: Arc::new(ClusterApi::new(service.clone())),
        };
        tokio::spawn(crate::http::listener::serve(
            port.listener,
            crate::http::router(apis, service.clone()),
            port.tls,
            stop_rx.clone(),
        ));
    }
    let api_server = tokio::spawn(
        with_tls(Server::builder(), api_tls, "API")?
            .timeout(Duration::from_secs(60))
            .http2_max_header_list_size(MAX_API_HEADER_BYTES)
            .add_service(
                pb::secrets_server::SecretsServer::new(SecretsApi::new(service.clone()))
                    .max_decoding_message_size(MAX_API_MESSAGE_BYTES),
            )
            .add_service(
                pb::cluster_server::ClusterServer::new(ClusterApi::new(service.clone()))
                    .max_decoding_message_size(MAX_API_MESSAGE_BYTES),
            )
            .add_service(
                pb::kms_server::KmsServer::new(KmsApi::new(service.clone()))
                    .max_decoding_message_size(MAX_API_MESSAGE_BYTES),
            )
            .add_service(
                pb::access_server::AccessServer::new(AccessApi::new(service.clone()))
                    .max_decoding_message_size(MAX_API_MESSAGE_BYTES),
            )
            .add_service(crate::api::grpc_health::start(service.clone()))
            .serve_with_incoming_shutdown(api_incoming, stopped(stop_rx.clone())),
    );

    if cfg.cluster.bootstrap {
        let members: Vec<pb::NodeInfo> = cfg.cluster.members.iter().map(|m| m.to_node_info()).collect();
        match raft.initialize(members).await {
            Ok(true) => tracing::info!("initialized a new cluster as its bootstrap node"),
            Ok(false) => tracing::debug!("storage already initialized; not bootstrapping"),
            Err(e) => anyhow::bail!("cannot initialize the cluster: {e}"),
        }
        tokio::spawn(bootstrap(raft.clone(), cfg.clone()));
    }
    crate::node_metrics::export_health(service.clone());
    if let Some(schedule) = cfg.backup_schedule() {
        tokio::spawn(crate::backup::schedule::run(service.clone(), schedule, stop_rx.clone()));
    }
    tokio::spawn(ensure_token_key(service.clone(), stop_rx.clone()));
    tokio::spawn(crate::service::destroyed::forget_destroyed_keys(
        service.clone(),
        stop_rx.clone(),
    ));
    tokio::spawn(crate::rewrap::run_job(
        raft.clone(),
        service.clone(),
        Duration::from_millis(cfg.kms.rewrap_interval_ms),
        stop_rx.clone(),
    ));
    tokio::spawn(crate::audit::anchor::run(
        raft.clone(),
        me.id,
        service.audit.clone(),
        cfg.audit_anchor_interval(),
        stop_rx.clone(),
    ));
    tokio::spawn(crate::rotation::scheduler::run(
        crate::rotation::scheduler::Scheduler::new(service.clone(), rotators),
        cfg.rotation_tick(),
        stop_rx.clone(),
    ));
    tokio::spawn(coffer_raft::placement::run(
        raft.clone(),
        cfg.cluster.preferred_regions.clone(),
        Duration::from_millis((cfg.raft.heartbeat_ms * 4).max(500)),
        stop_rx.clone(),
    ));
    tracing::info!(node = %me.name, region = %me.region, api = %me.api_addr, raft = %me.raft_addr, "node started");
    if let Some(f) = on_start {
        f(&raft);
    }

    let mut peer_server = peer_server;
    let mut api_server = api_server;
    tokio::select! {
        _ = shutdown => tracing::info!("shutting down"),
        r = &mut peer_server => tracing::error!("peer server stopped: {r:?}"),
        r = &mut api_server => tracing::error!("API server stopped: {r:?}"),
    }
    let _ = stop_tx.send(true);
    // Let in-flight requests finish (bounded), then stop Raft and flush storage.
    let drain = async {
        let _ = (&mut api_server).await;
        let _ = (&mut peer_server).await;
    };
    if tokio::time::timeout(Duration::from_secs(5), drain).await.is_err() {
        api_server.abort();
        peer_server.abort();
    }
    raft.shutdown().await;
    sm.flush_at_shutdown().context("flushing storage at shutdown")?;
    drop(service);
    drop(raft);
    tracing::info!("stopped");
    Ok(())
}

/// `builder` serving TLS with `tls`, or plaintext when it is `None`.
fn with_tls(builder: Server, tls: Option<ServerTlsConfig>, port: &str) -> anyhow::Result<Server> {
    match tls {
        Some(t) => builder
            .tls_config(t)
            .map_err(|e| anyhow::anyhow!("TLS settings of the {port} port: {}", crate::client::error_chain(&e))),
        None => Ok(builder),
    }
}

/// Proposes the Bootstrap command until the cluster info is applied.
async fn bootstrap(raft: RaftNode, cfg: ServerConfig) {
    let hash = cfg
        .cluster
        .root_token_sha256
        .as_deref()
        .and_then(|h| hex::decode(h).ok())
        .unwrap_or_default();
    loop {
        let done = {
            let view = raft.reader().view();
            matches!(coffer_model::query::cluster_info(&*view), Ok(Some(_)))
        };
        if done {
            return;
        }
        let cmd = pb::Command {
            proposed_at_ms: crate::time::now_ms(),
            principal: "bootstrap".into(),
            request_id: String::new(),
            op: Some(pb::command::Op::Bootstrap(pb::Bootstrap {
                cluster: Some(pb::ClusterInfo {
                    cluster_id: cfg.cluster.id.clone(),
                    root_token_sha256: hash.clone(),
                    regions: cfg.region_configs(),
                    bootstrapped_at_ms: crate::time::now_ms(),
                    token_key: None,
                    root_revoked_at_ms: 0,
                    default_max_versions: cfg.cluster.default_max_versions.unwrap_or(0),
                    token_record_retention_ms: cfg.cluster.token_record_retention_ms.unwrap_or(0),
                }),
                request_retention_ms: cfg.cluster.request_retention_ms.unwrap_or(0),
            })),
        };
        match raft.propose(cmd, Duration::from_secs(10)).await {
            Ok(r) => {
                if let Some(pb::command_result::Outcome::Error(e)) = r.outcome {
                    tracing::error!("bootstrap refused: {}", e.message);
                    return;
                }
                tracing::info!("cluster bootstrapped");
            }
            Err(e) => {
                tracing::info!("waiting to bootstrap: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Makes sure the cluster has a token key: the leader seals a fresh one (wrapped for every
/// region) and proposes it once the cluster is bootstrapped. The first proposal wins.
async fn ensure_token_key(service: Arc<Service>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        let info = {
            let view = service.raft.reader().view();
            coffer_model::query::cluster_info(&*view).ok().flatten()
        };
        match info {
            Some(i) if i.token_key.is_some() => return,
            Some(_) if service.raft.status().role == coffer_raft::node::Role::Leader => {}
            _ => continue,
        }
        let sealed = async {
            let key = crate::crypto::SecretValue::new(
                crate::crypto::random_bytes::<32>().map_err(|e| e.to_string())?.to_vec(),
            );
            let sealer = service
                .vault
                .prepare(crate::tokens::TOKEN_KEY_NAME)
                .await
                .map_err(|e| e.to_string())?;
            sealer.seal(&key, 1).map_err(|e| e.to_string())
        };
        let envelope = match sealed.await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("cannot seal the token key yet: {e}");
                continue;
            }
        };
        let request_id = match crate::request_ids::fresh() {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!("cannot propose the token key yet: {e}");
                continue;
            }
        };
        let cmd = pb::Command {
            proposed_at_ms: crate::time::now_ms(),
            principal: "system".into(),
            request_id,
            op: Some(pb::command::Op::SetTokenKey(pb::SetTokenKey { key: Some(envelope) })),
        };
        if let Err(e) = service.raft.propose(cmd, Duration::from_secs(5)).await {
            tracing::info!("token key not stored yet: {e}");
        }
    }
}

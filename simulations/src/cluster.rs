//! Building the simulated world: node hosts running the real node code over memory storage,
//! one KMS host per region, and node configs derived from the shape.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use coffer::config::ServerConfig;
use coffer::crypto::kms::Kms;
use coffer::node::NodeParts;
use coffer::peer_guard::PeerSecurity;
use coffer_raft::mem::MemLogBackend;
use coffer_raft::mem::MemSmBackend;
use coffer_raft::node::RaftNode;
use coffer_raft::node::Role;
use coffer_raft::peer_auth::ClusterKey;
use coffer_raft::peer_auth::PeerCredential;
use sha2::Digest;

use crate::history::History;
use crate::history::Sample;
use crate::kms_host::SimKms;
use crate::net::incoming;
use crate::net::Leaks;
use crate::net::SimConnector;
use crate::shape::Shape;
use crate::shape::SimNode;
use crate::shape::API_PORT;
use crate::shape::KMS_PORT;
use crate::shape::RAFT_PORT;
use crate::shape::ROOT_TOKEN;

/// How often each node samples its own Raft state for the election-safety check.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// How long the simulated cluster keeps request records: longer than any client's retries
/// (3 attempts of 8 s, a proposal that waits out a partition), short enough that runs with a
/// long safety phase expire records while clients write.
pub const REQUEST_RETENTION: Duration = Duration::from_secs(60);

/// A node's durable storage, kept by the harness across crashes.
#[derive(Clone, Default)]
pub struct Storage {
    pub log: MemLogBackend,
    pub sm: MemSmBackend,
    /// The node's audit log (a hash chain in memory).
    pub audit: Arc<coffer::audit::MemoryChain>,
}

/// The running node's Raft handle, set when it starts and cleared when it crashes.
pub type Slot = Arc<Mutex<Option<RaftNode>>>;

pub fn addr(sim: &turmoil::Sim<'_>, host: &str, port: u16) -> String {
    format!("{}:{port}", sim.lookup(host))
}

/// The simulated cluster's peer key (an obviously fake value): nodes prove membership with it
/// on every peer request, as plaintext production nodes do.
fn sim_peer_key() -> ClusterKey {
    ClusterKey::from_bytes([0x5a; 32])
}

/// The node's config, as an operator would write it.
pub fn node_config(sim: &turmoil::Sim<'_>, shape: &Shape, node: &SimNode) -> ServerConfig {
    let host = &node.name;
    let members: String = shape
        .voters()
        .map(|m| {
            format!(
                "[[cluster.members]]\nid = {}\nname = \"{}\"\nregion = \"{}\"\nraft_addr = \"{}\"\napi_addr = \"{}\"\n\n",
                m.id,
                m.name,
                shape.regions[m.region],
                addr(sim, &m.name, RAFT_PORT),
                addr(sim, &m.name, API_PORT)
            )
        })
        .collect();
    let regions: String = shape
        .regions
        .iter()
        .map(|r| {
            format!(
                "[[regions]]\nname = \"{r}\"\nkms_provider = \"aws\"\nkey_id = \"{}\"\naws_region = \"sim-1\"\n\
                 endpoint = \"http://kms-{r}:{KMS_PORT}\"\n\n",
                crate::kms_host::key_id(r)
            )
        })
        .collect();
    let hash = hex::encode(sha2::Sha256::digest(ROOT_TOKEN.as_bytes()));
    let text = format!(
        "[node]\nid = {id}\nname = \"{host}\"\nregion = \"{region}\"\ndata_dir = \"/sim/{host}\"\n\
         api_addr = \"{api}\"\nraft_addr = \"{raft}\"\n\n\
         [cluster]\nid = \"sim\"\nbootstrap = {bootstrap}\nroot_token_sha256 = \"{hash}\"\nmin_voters = 1\n\
         request_retention_ms = {retention}\ndefault_max_versions = {max_versions}\ntoken_record_retention_ms = {token_retention}\n\n\
         {members}{regions}\
         [kms]\nfallback = \"deny\"\ncall_timeout_ms = 1000\nretry_unhealthy_after_ms = 2000\nrewrap_interval_ms = 1000\n\n\
         [raft]\nheartbeat_ms = {hb}\nelection_timeout_min_ms = {emin}\nelection_timeout_max_ms = {emax}\n\
         snapshot_every_entries = {snap}\nkeep_logs_after_snapshot = 5\n\n\
         [limits]\nwrite_timeout_ms = 6000\n\n\
         [audit]\nanchor_interval_ms = {anchor_ms}\n\n\
         [rotation]\ntick_ms = {rotation_tick}\n\n\
         [network]\nplaintext = true\npeer_key_file = \"/sim/peer.key\"\n",
        id = node.id,
        region = shape.regions[node.region],
        api = addr(sim, host, API_PORT),
        raft = addr(sim, host, RAFT_PORT),
        bootstrap = node.id == 1,
        hb = shape.heartbeat_ms,
        emin = shape.election_min_ms,
        emax = shape.election_max_ms,
        snap = shape.snapshot_every,
        retention = REQUEST_RETENTION.as_millis(),
        max_versions = crate::shape::SIM_MAX_VERSIONS,
        token_retention = crate::shape::SIM_TOKEN_RETENTION_MS,
        anchor_ms = crate::shape::SIM_ANCHOR_INTERVAL_MS,
        rotation_tick = crate::rotation_log::TICK_MS,
    );
    let cfg: ServerConfig =
        toml::from_str(&text).unwrap_or_else(|e| panic!("simulation config does not parse: {e}\n{text}"));
    if let Err(e) = cfg.validate() {
        panic!("simulation config for {host} is invalid: {e}\n{text}");
    }
    cfg
}

/// Registers a node host: the real node (tonic services, openraft, state machine, envelope
/// crypto, KmsSet) over turmoil sockets and memory storage, plus a sampler of its Raft state.
#[allow(clippy::too_many_arguments)]
pub fn add_node(
    sim: &mut turmoil::Sim<'_>,
    shape: &Shape,
    node: &SimNode,
    storage: Storage,
    slot: Slot,
    leaks: Arc<Leaks>,
    history: Rc<RefCell<History>>,
    hooks: crate::rotator::HookSetup,
) {
    let cfg = node_config(sim, shape, node);
    let kms_addrs: Vec<(String, String)> = (0..shape.regions.len())
        .map(|r| (shape.regions[r].clone(), addr(sim, &shape.kms_host(r), KMS_PORT)))
        .collect();
    let name = node.name.clone();
    let id = node.id;
    sim.host(node.name.as_str(), move || {
        let cfg = cfg.clone();
        let kms: Vec<Arc<dyn Kms>> = kms_addrs
            .iter()
            .map(|(r, a)| Arc::new(SimKms::new(r, a.clone())) as Arc<dyn Kms>)
            .collect();
        let storage = storage.clone();
        let slot = slot.clone();
        let leaks = leaks.clone();
        let history = history.clone();
        let name = name.clone();
        let rotator = Arc::new(hooks.rotator(&name));
        async move {
            let api = turmoil::net::TcpListener::bind(("0.0.0.0", API_PORT)).await?;
            let raft = turmoil::net::TcpListener::bind(("0.0.0.0", RAFT_PORT)).await?;
            let on_start_slot = slot.clone();
            let parts = NodeParts {
                http: None,
                log: Arc::new(storage.log.clone()),
                sm: Arc::new(storage.sm.clone()),
                kms,
                connector: Arc::new(SimConnector {
                    leaks: leaks.clone(),
                    from: name.clone(),
                    credential: PeerCredential::cluster_key(&sim_peer_key(), id),
                }),
                audit: storage.audit.clone(),
                api_tls: None,
                peer: PeerSecurity::ClusterKey(Arc::new(sim_peer_key())),
                on_start: Some(Box::new(move |r: &RaftNode| {
                    *on_start_slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(r.clone());
                })),
                rotators: rotator,
            };
            let tap = Some((leaks, format!("{name} inbound")));
            let serve = coffer::node::serve(
                cfg,
                parts,
                incoming(api, None),
                incoming(raft, tap),
                std::future::pending(),
            );
            tokio::select! {
                r = serve => r.map_err(|e| e.to_string().into()),
                _ = sample(id, slot, history) => Ok(()),
            }
        }
    });
}

/// Samples this node's Raft state at every multiple of [`SAMPLE_EVERY`] of simulated time.
async fn sample(id: u64, slot: Slot, history: Rc<RefCell<History>>) {
    loop {
        let now = turmoil::sim_elapsed().unwrap_or_default();
        let step = SAMPLE_EVERY.as_micros() as u64;
        let next = (now.as_micros() as u64 / step + 1) * step;
        tokio::time::sleep(Duration::from_micros(next - now.as_micros() as u64)).await;
        let raft = slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(raft) = raft else { continue };
        let (role, _) = raft.role_and_membership();
        let leader = role == Role::Leader;
        let status = raft.status();
        history.borrow_mut().samples.push(Sample {
            at_us: turmoil::sim_elapsed().unwrap_or_default().as_micros() as u64,
            node: id,
            term: status.term,
            leader,
            lease: leader && raft.staleness_bound_ms() == 1,
        });
    }
}

/// Every byte each node stores, for the plaintext check.
pub fn storage_dump(nodes: &BTreeMap<String, Storage>) -> Vec<(String, Vec<Vec<u8>>)> {
    nodes
        .iter()
        .map(|(n, s)| {
            let mut all = s.log.dump();
            all.extend(s.sm.dump());
            (n.clone(), all)
        })
        .collect()
}

/// One node's request table at the end of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTable {
    pub node: String,
    /// The index of the last entry its state machine applied.
    pub applied: u64,
    /// Every pair of the table: its bookkeeping (`m/requests`), records (`r/`) and queue (`x/`).
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Every node's request table, for the checks that replicas agree and that the table is whole.
pub fn request_tables(nodes: &BTreeMap<String, Storage>) -> Vec<RequestTable> {
    use coffer_model::keys;
    use coffer_raft::storage::SmBackend;
    nodes
        .iter()
        .map(|(n, s)| {
            let view = s.sm.view();
            let applied = coffer_raft::state_machine::applied_index_in(&*view).unwrap_or(0);
            let mut pairs = Vec::new();
            if let Ok(Some(meta)) = view.get(keys::REQUESTS_META) {
                pairs.push((keys::REQUESTS_META.to_vec(), meta));
            }
            for prefix in [keys::REQUEST_PREFIX, keys::REQUEST_QUEUE_PREFIX] {
                pairs.extend(view.scan(prefix, prefix, usize::MAX).unwrap_or_default());
            }
            RequestTable {
                node: n.clone(),
                applied,
                pairs,
            }
        })
        .collect()
}

/// The version records one node holds for one secret at the end.
#[derive(Debug, Clone)]
pub struct KeptVersions {
    pub node: String,
    pub secret: String,
    /// The cap in force for it.
    pub max_versions: u64,
    pub next_version: u64,
    /// alias -> version.
    pub aliases: Vec<(String, u64)>,
    /// Versions with a record, ascending.
    pub versions: Vec<u64>,
}

/// Every secret each node holds at the end, with the versions it keeps (see
/// `invariants::versions_kept`).
pub fn version_sets(nodes: &BTreeMap<String, Storage>) -> Vec<KeptVersions> {
    use coffer::pb;
    use coffer_model::keys;
    use coffer_raft::storage::SmBackend;
    use prost::Message;
    let mut out = Vec::new();
    for (n, s) in nodes {
        let view = s.sm.view();
        for (_, v) in view
            .scan(keys::SECRET_PREFIX, keys::SECRET_PREFIX, usize::MAX)
            .unwrap_or_default()
        {
            let Ok(secret) = pb::Secret::decode(&v[..]) else {
                continue;
            };
            let prefix = keys::versions_of(&secret.name);
            let versions = view
                .scan(&prefix, &prefix, usize::MAX)
                .unwrap_or_default()
                .iter()
                .filter_map(|(k, _)| keys::version_number(k, &secret.name))
                .collect();
            out.push(KeptVersions {
                node: n.clone(),
                max_versions: coffer_model::version_cap::max_versions(&secret),
                next_version: secret.next_version,
                aliases: secret.aliases.into_iter().collect(),
                versions,
                secret: secret.name,
            });
        }
    }
    out
}

/// One node's token records at the end, and the request table's clock (the time its last
/// applied command ran at).
#[derive(Debug, Clone)]
pub struct NodeTokens {
    pub node: String,
    pub clock_ms: u64,
    pub records: Vec<coffer::pb::TokenRecord>,
}

/// Every node's token records at the end, with the clock its last command ran at.
pub fn token_tables(nodes: &BTreeMap<String, Storage>) -> Vec<NodeTokens> {
    use coffer_raft::storage::SmBackend;
    nodes
        .iter()
        .map(|(n, s)| {
            let view = s.sm.view();
            let clock_ms = view
                .get(coffer_model::keys::REQUESTS_META)
                .ok()
                .flatten()
                .and_then(|b| <coffer::pb::RequestTableMeta as prost::Message>::decode(&b[..]).ok())
                .map_or(0, |m| m.clock_ms);
            NodeTokens {
                node: n.clone(),
                clock_ms,
                records: coffer_model::access_records::tokens(&*view).unwrap_or_default(),
            }
        })
        .collect()
}

/// The audit anchors one replica holds at the end, one record per anchored node.
#[derive(Debug, Clone)]
pub struct ReplicaAnchors {
    pub replica: String,
    pub records: Vec<coffer::pb::AuditAnchors>,
}

/// Every replica's audit anchors at the end (see `invariants::audit_anchored`).
pub fn anchor_tables(nodes: &BTreeMap<String, Storage>) -> Vec<ReplicaAnchors> {
    use coffer_model::keys;
    use coffer_raft::storage::SmBackend;
    use prost::Message;
    nodes
        .iter()
        .map(|(n, s)| ReplicaAnchors {
            replica: n.clone(),
            records: s
                .sm
                .view()
                .scan(keys::AUDIT_ANCHORS_PREFIX, keys::AUDIT_ANCHORS_PREFIX, usize::MAX)
                .unwrap_or_default()
                .iter()
                .filter_map(|(_, v)| coffer::pb::AuditAnchors::decode(&v[..]).ok())
                .collect(),
        })
        .collect()
}

/// Whether any node's request table has dropped an expired record.
pub fn some_request_expired(tables: &[RequestTable]) -> bool {
    use coffer::pb;
    use prost::Message;
    tables.iter().any(|t| {
        t.pairs
            .iter()
            .find(|(k, _)| k == coffer_model::keys::REQUESTS_META)
            .and_then(|(_, v)| pb::RequestTableMeta::decode(&v[..]).ok())
            .is_some_and(|m| m.head > 0)
    })
}

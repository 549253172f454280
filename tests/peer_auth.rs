//! What a stranger learns from a node: the peer (Raft) port of a plaintext cluster admits
//! members only (every request must carry a proof under the cluster's peer key; a local caller
//! without the key is refused on every RPC before any handler runs), anonymous health is the
//! status alone, and a node refuses to start plaintext off loopback, or with a peer key file
//! others can read.

mod common;

use std::path::Path;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use coffer::pb;
use coffer::pb::raft_peer_client::RaftPeerClient;
use coffer_raft::peer_auth::ClusterKey;
use coffer_raft::peer_auth::PeerCredential;
use common::*;
use tonic::transport::Channel;

const REGIONS: [&str; 3] = ["us-east", "eu-west", "ap-south"];

async fn channel(raft_addr: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{raft_addr}"))
        .unwrap()
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap()
}

/// Every peer RPC a stranger could use to read or change the cluster, called with `cred`;
/// the status codes, in order.
async fn codes(raft_addr: &str, cred: PeerCredential) -> Vec<(&'static str, tonic::Code)> {
    let mut c = RaftPeerClient::with_interceptor(channel(raft_addr).await, cred);
    let code = |r: Result<(), tonic::Status>| r.map_or_else(|s| s.code(), |_| tonic::Code::Ok);
    vec![
        (
            "GetLocalStatus",
            code(c.get_local_status(pb::LocalStatusRequest {}).await.map(drop)),
        ),
        (
            "Propose",
            code(c.propose(pb::ProposeRequest::default()).await.map(drop)),
        ),
        (
            "ProposeBatch",
            code(c.propose_batch(pb::ProposeBatchRequest::default()).await.map(drop)),
        ),
        ("Fetch", code(c.fetch(pb::ReadQuery::default()).await.map(drop))),
        (
            "Admin",
            code(c.admin(pb::MembershipChangeRequest::default()).await.map(drop)),
        ),
        ("Vote", code(c.vote(pb::VoteRequest::default()).await.map(drop))),
        (
            "ReadIndex",
            code(c.read_index(pb::ReadIndexRequest::default()).await.map(drop)),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plaintext_peer_port_refuses_callers_without_the_cluster_key() {
    let cluster = TestCluster::start(BIN, &REGIONS, FAST_RAFT).await;
    let leader = cluster.wait_leader(Duration::from_secs(30)).await;
    let raft_addr = cluster.node(leader).raft.clone();

    for (who, cred) in [
        ("no proof", PeerCredential::none()),
        (
            "a proof under another key",
            PeerCredential::cluster_key(&ClusterKey::from_bytes([0x11; 32]), 1),
        ),
    ] {
        for (rpc, code) in codes(&raft_addr, cred).await {
            assert_eq!(code, tonic::Code::Unauthenticated, "{rpc} with {who}");
        }
    }

    // A member's proof (the key file every node reads) gets through to the handlers.
    let key = ClusterKey::load(&cluster.dir.path().join("peer.key")).unwrap();
    let member = PeerCredential::cluster_key(&key, 2);
    let mut c = RaftPeerClient::with_interceptor(channel(&raft_addr).await, member);
    let status = c
        .get_local_status(pb::LocalStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.node_id, leader as u64 + 1);

    // Nor does the API tell a stranger about the cluster: anonymous health is the status
    // alone; the node and its Raft state (term, leader) need an identity.
    let api = cluster.node(leader).api.clone();
    let health = |token: Option<String>| {
        let api = api.clone();
        async move {
            let c = coffer::client::Client::connect_with(&api, token.as_deref(), None)
                .await
                .unwrap();
            c.cluster
                .clone()
                .health(pb::HealthRequest {})
                .await
                .unwrap()
                .into_inner()
        }
    };
    let anonymous = health(None).await;
    assert_eq!(anonymous.status, "serving");
    assert!(anonymous.node.is_none() && anonymous.local.is_none(), "{anonymous:?}");
    let known = health(Some(cluster.token().to_string())).await;
    assert_eq!(known.node.unwrap().raft_addr, raft_addr);
    assert_eq!(known.local.unwrap().node_id, leader as u64 + 1);

    // The cluster itself, whose nodes all prove membership, still replicates writes.
    let lc = cluster.client(leader).await;
    let w = put(&lc, "acme/peer-auth/after", b"fake-value").await.unwrap();
    assert_eq!(w.version, 1);
    let follower = (leader + 1) % REGIONS.len();
    let fc = cluster.client(follower).await;
    let got = get_with(
        &fc,
        "acme/peer-auth/after",
        None,
        Some(pb::read_consistency::Mode::Linearizable(pb::LinearizableRead {})),
    )
    .await
    .unwrap();
    assert_eq!(got.value, b"fake-value");
}

/// Starts `coffer server --config cfg` and returns its exit code and stderr; fails the test if
/// the node is still running after 20 s (it must refuse to start).
fn refused_start(cfg: &Path) -> (i32, String) {
    let mut child = Command::new(BIN)
        .args(["server", "--config"])
        .arg(cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            return (status.code().unwrap_or(-1), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the node started with {}", cfg.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_node_refuses_plaintext_off_loopback_and_a_peer_key_others_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new().unwrap();
    let file = coffer::dev::ClusterFile {
        cluster_id: "refusals".into(),
        root_token: coffer::authz::new_token().unwrap(),
        nodes: vec![coffer::dev::DevNode {
            id: 1,
            name: "us-east-1".into(),
            region: "us-east".into(),
            api: format!("127.0.0.1:{}", free_port()),
            raft: format!("127.0.0.1:{}", free_port()),
            http: String::new(),
            pid: 0,
        }],
        ca_cert: None,
    };
    let key = coffer::dev::ensure_peer_key(dir.path()).unwrap();
    coffer::crypto::kms::local::create_keyring(&dir.path().join("keyring"), "us-east").unwrap();
    let cfg = coffer::dev::node_config(
        &file,
        &file.nodes[0],
        dir.path(),
        FAST_RAFT,
        &coffer::dev::DevKmsConfig::Local,
    );
    let path = dir.path().join("coffer.toml");

    let exposed = cfg.replace(&file.nodes[0].raft, &format!("0.0.0.0:{}", free_port()));
    assert_ne!(exposed, cfg);
    std::fs::write(&path, &exposed).unwrap();
    let (code, err) = refused_start(&path);
    assert_ne!(code, 0);
    assert!(err.contains("loopback only") && err.contains("node.raft_addr"), "{err}");

    std::fs::write(&path, &cfg).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, err) = refused_start(&path);
    assert_ne!(code, 0);
    assert!(err.contains("chmod 600"), "{err}");
    assert!(
        !err.contains(std::fs::read_to_string(&key).unwrap().trim()),
        "the key is never printed: {err}"
    );
}

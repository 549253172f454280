//! TLS between real nodes on loopback: a 3-node cluster serves the CLI and the SDK over TLS and
//! refuses clients that do not trust its CA (or do not speak TLS); a node whose certificate
//! comes from another CA can neither join nor get a Raft RPC through; the peer port admits node
//! certificates only.

mod common;

use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;
use std::time::Instant;

use coffer::client::Client;
use coffer::client::ClientError;
use coffer::client::ClientTls;
use coffer::client::TlsProblem;
use coffer::pb;
use coffer::tls::issue::DevCa;
use coffer::tls::issue::Issued;
use common::*;
use tonic::transport::Certificate;
use tonic::transport::ClientTlsConfig;
use tonic::transport::Endpoint;
use tonic::transport::Identity;

const REGIONS: [&str; 3] = ["us-east", "eu-west", "ap-south"];

/// Writes `issued` as `<dir>/<stem>.pem` and `<dir>/<stem>-key.pem` (0600).
fn write_issued(dir: &Path, stem: &str, issued: &Issued) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let (cert, key) = (dir.join(format!("{stem}.pem")), dir.join(format!("{stem}-key.pem")));
    std::fs::write(&cert, &issued.cert_pem).unwrap();
    std::fs::write(&key, issued.key_pem.as_bytes()).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    (cert, key)
}

#[track_caller]
fn one_line_failure(code: i32, out: &str, err: &str) {
    assert_ne!(code, 0, "must fail: {out}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line (exit {code}): {err:?} {out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_serves_trusting_clients_and_refuses_the_others() {
    let mut spec = ClusterSpec::new(&REGIONS, FAST_RAFT);
    spec.tls = true;
    let cluster = TestCluster::launch(BIN, spec).await;
    let leader = cluster.wait_leader(Duration::from_secs(30)).await;
    let cfg = std::fs::read_to_string(cluster.node_dir(0).join("coffer.toml")).unwrap();
    assert!(cfg.contains("[tls]") && !cfg.contains("plaintext"), "{cfg}");

    // SDK over TLS: a write through the leader, a linearizable read from a follower.
    let lc = cluster.client(leader).await;
    assert!(lc.addr.starts_with("https://"), "{}", lc.addr);
    put(&lc, "acme/tls/sdk", b"fake-sdk-value").await.unwrap();
    let follower = (leader + 1) % 3;
    let fc = cluster.client(follower).await;
    let r = get_with(
        &fc,
        "acme/tls/sdk",
        None,
        Some(pb::read_consistency::Mode::Linearizable(pb::LinearizableRead {})),
    )
    .await
    .unwrap();
    assert_eq!(r.value, b"fake-sdk-value");

    // CLI over TLS (COFFER_CACERT set by the kit, bare address).
    cluster.cli_json(
        follower,
        &["secret", "put", "acme/tls/cli", "--value", "fake-cli-value"],
    );
    let got = cluster.cli_json(
        (follower + 1) % 3,
        &["secret", "get", "acme/tls/cli", "--consistency", "linearizable"],
    );
    assert_eq!(got["value"], "fake-cli-value", "{got}");
    let https = format!("https://{}", cluster.node(0).api);
    let (code, out, err) = cluster.cli_env(0, &["cluster", "status"], &[("COFFER_ADDR", Some(&https))]);
    assert_eq!(code, 0, "{err}{out}");

    // Another CA: the CLI says so in one line, the SDK names the problem.
    let other = DevCa::generate("some other CA").unwrap();
    let other_ca = cluster.dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, other.cert_pem()).unwrap();
    let (code, out, err) = cluster.cli_env(
        0,
        &["secret", "get", "acme/tls/cli"],
        &[("COFFER_CACERT", Some(other_ca.to_str().unwrap()))],
    );
    one_line_failure(code, &out, &err);
    assert!(
        err.contains("TLS: the server certificate of https://")
            && err.contains("is not signed by the CA in COFFER_CACERT"),
        "{err}"
    );
    let api = &cluster.node(0).api;
    match Client::connect_with(api, Some(cluster.token()), Some(&ClientTls::new(other.cert_pem()))).await {
        Err(ClientError::Tls {
            problem: TlsProblem::UntrustedServer,
            ..
        }) => {}
        Err(e) => panic!("expected an untrusted-server error, got: {e}"),
        Ok(_) => panic!("a client trusting another CA connected"),
    }

    // No CA: an https:// address is refused before dialling; a plaintext client fails.
    let (code, out, err) = cluster.cli_env(
        0,
        &["cluster", "status"],
        &[("COFFER_ADDR", Some(&https)), ("COFFER_CACERT", None)],
    );
    one_line_failure(code, &out, &err);
    assert!(err.contains("no CA is given") && err.contains("COFFER_CACERT"), "{err}");
    let (code, out, err) = cluster.cli_env(0, &["secret", "get", "acme/tls/cli"], &[("COFFER_CACERT", None)]);
    one_line_failure(code, &out, &err);
    assert!(!out.contains("fake-cli-value"), "{out}");
    assert!(
        err.contains("if the server uses TLS") && err.contains("COFFER_CACERT"),
        "a plaintext client is told the server may want TLS: {err}"
    );
    let plain = async {
        let c = Client::connect(api, Some(cluster.token())).await.ok()?;
        get(&c, "acme/tls/sdk", None).await.ok()
    };
    assert!(plain.await.is_none(), "a plaintext client read from the TLS port");

    // mTLS on the API port: a client certificate from the cluster CA is accepted at the
    // handshake; one from another CA is refused.
    let ca_pem = std::fs::read(cluster.tls_dir().join("ca.pem")).unwrap();
    let own = std::fs::read(cluster.tls_dir().join("client.pem")).unwrap();
    let own_key = std::fs::read(cluster.tls_dir().join("client-key.pem")).unwrap();
    let tls = ClientTls::new(ca_pem.clone()).with_identity(own, own_key);
    let c = Client::connect_with(api, None, Some(&tls)).await.unwrap();
    let h = c
        .cluster
        .clone()
        .health(pb::HealthRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.status, "serving");
    let foreign = other.issue_client("user:dev-admin").unwrap();
    let tls = ClientTls::new(ca_pem).with_identity(foreign.cert_pem.clone(), foreign.key_pem.as_bytes().to_vec());
    let refused = async {
        let c = Client::connect_with(api, None, Some(&tls)).await.ok()?;
        c.cluster.clone().health(pb::HealthRequest {}).await.ok()
    };
    assert!(
        refused.await.is_none(),
        "a client certificate from another CA was accepted"
    );
}

/// A raw peer (Raft) client of `raft_addr` trusting `ca_pem` and presenting `identity`.
async fn local_status(
    raft_addr: &str,
    ca_pem: &str,
    identity: Option<(&str, &str)>,
) -> Result<pb::LocalStatus, tonic::Status> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let ep = Endpoint::from_shared(format!("https://{raft_addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5));
    let channel = ep
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(coffer::client::error_chain(&e)))?;
    pb::raft_peer_client::RaftPeerClient::new(channel)
        .get_local_status(pb::LocalStatusRequest {})
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_ca_cannot_join_or_send_raft_rpcs() {
    let mut spec = ClusterSpec::new(&REGIONS, FAST_RAFT);
    spec.tls = true;
    spec.spare_regions = vec!["sa-east".into()];
    let mut cluster = TestCluster::launch(BIN, spec).await;
    let leader = cluster.wait_leader(Duration::from_secs(30)).await;
    let lc = cluster.client(leader).await;
    put(&lc, "acme/join/before", b"fake-before").await.unwrap();

    // The spare gets a certificate (and trust) from another CA, then starts empty.
    let spare = cluster.node(3).clone();
    let other = DevCa::generate("intruder CA").unwrap();
    let foreign_dir = cluster.dir.path().join("foreign");
    let foreign_node = other.issue_node(&spare.name, &["127.0.0.1", "localhost"]).unwrap();
    let (cert, key) = write_issued(&foreign_dir, &spare.name, &foreign_node);
    std::fs::write(foreign_dir.join("ca.pem"), other.cert_pem()).unwrap();
    let cfg_path = cluster.node_dir(3).join("coffer.toml");
    let tls = cluster.tls_dir();
    let cfg = std::fs::read_to_string(&cfg_path)
        .unwrap()
        .replace(
            &tls.join(format!("{}-key.pem", spare.name)).display().to_string(),
            &key.display().to_string(),
        )
        .replace(
            &tls.join(format!("{}.pem", spare.name)).display().to_string(),
            &cert.display().to_string(),
        )
        .replace(
            &tls.join("ca.pem").display().to_string(),
            &foreign_dir.join("ca.pem").display().to_string(),
        );
    assert!(cfg.contains(&foreign_dir.display().to_string()), "{cfg}");
    std::fs::write(&cfg_path, cfg).unwrap();
    cluster.restart(3);
    let foreign_tls = ClientTls::new(other.cert_pem());
    let spare_health = || async {
        let c = Client::connect_with(&spare.api, None, Some(&foreign_tls)).await.ok()?;
        c.cluster
            .clone()
            .health(pb::HealthRequest {})
            .await
            .ok()
            .map(|r| r.into_inner())
    };
    let h = eventually(Duration::from_secs(20), "the foreign node to start", || async {
        spare_health().await.filter(|h| h.status == "not_joined")
    })
    .await;

    // add-learner through the CLI: the new node's certificate does not verify; nothing changes.
    let (code, out, err) = cluster.cli(0, &["cluster", "add-learner", "--node-api", &spare.api]);
    one_line_failure(code, &out, &err);
    assert!(err.contains("is not signed by the CA"), "{err}");
    let st = cluster.cli_json(0, &["cluster", "status"]);
    assert_eq!(st["nodes"].as_array().unwrap().len(), 3, "{st}");

    // Force it into the membership anyway (as if its API had been vouched for): the leader
    // cannot replicate to it, so it never applies an entry, and the cluster carries on.
    let node = h.node.clone().unwrap();
    lc.cluster
        .clone()
        .change_membership(pb::MembershipChangeRequest {
            change: Some(pb::membership_change_request::Change::AddLearner(node)),
            force: true,
        })
        .await
        .unwrap();
    let st = cluster.cli_json(0, &["cluster", "status"]);
    assert!(
        st["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"] == spare.name.as_str()),
        "the learner is a member now: {st}"
    );
    // Many heartbeats and several commits later, it still has applied nothing.
    let until = Instant::now() + Duration::from_secs(4);
    let mut i = 0;
    while Instant::now() < until {
        put(&lc, &format!("acme/join/after-{i}"), b"fake-after").await.unwrap();
        i += 1;
        let h = spare_health().await.expect("the foreign node answers its own CA");
        let local = h.local.unwrap_or_default();
        assert_eq!(h.status, "not_joined", "{local:?}");
        assert_eq!(local.applied_index, 0, "the foreign node applied entries: {local:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(i >= 5, "the cluster kept committing writes ({i})");
    // Every voter still follows the same leader.
    for v in 0..3 {
        let s = cluster.status(v).await.expect("a voter answers");
        assert_eq!(s.leader_id, leader as u64 + 1, "node {v}");
    }
    let r = get(&cluster.client((leader + 2) % 3).await, "acme/join/before", None)
        .await
        .unwrap();
    assert_eq!(r.value, b"fake-before");
    // The leader refused the foreign node's server certificate.
    let log = cluster.log(leader);
    assert!(
        log.contains("UnknownIssuer") || log.contains("invalid peer certificate"),
        "the leader's log shows no certificate error"
    );
    let (code, out, err) = cluster.cli(0, &["cluster", "remove", &spare.name]);
    assert_eq!(code, 0, "{err}{out}");
    cluster.stop(3);

    // The peer port, with a raw RaftPeer client.
    let member = &cluster.node(0).raft;
    let ca_pem = std::fs::read_to_string(tls.join("ca.pem")).unwrap();
    // Another CA's client certificate: the handshake fails (no interceptor answer).
    let e = local_status(
        member,
        &ca_pem,
        Some((&foreign_node.cert_pem, foreign_node.key_pem.as_str())),
    )
    .await
    .unwrap_err();
    assert!(
        !matches!(e.code(), tonic::Code::PermissionDenied | tonic::Code::Ok),
        "another CA's certificate got past the handshake: {e:?}"
    );
    assert!(!e.message().contains("admits node certificates"), "{e:?}");
    // No client certificate at all: also refused at the handshake.
    let e = local_status(member, &ca_pem, None).await.unwrap_err();
    assert_ne!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(
        !e.message().contains("need a node certificate"),
        "no handshake check: {e:?}"
    );
    // A principal's certificate from the right CA: the guard refuses it.
    let client = std::fs::read_to_string(tls.join("client.pem")).unwrap();
    let client_key = std::fs::read_to_string(tls.join("client-key.pem")).unwrap();
    let e = local_status(member, &ca_pem, Some((&client, &client_key)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("admits node certificates"), "{e:?}");
    // A node certificate from the right CA: answered.
    let n2 = &cluster.node(1).name;
    let cert = std::fs::read_to_string(tls.join(format!("{n2}.pem"))).unwrap();
    let key = std::fs::read_to_string(tls.join(format!("{n2}-key.pem"))).unwrap();
    let s = local_status(member, &ca_pem, Some((&cert, &key))).await.unwrap();
    assert_eq!(s.node_id, 1);
    // And the cluster is still healthy.
    put(&lc, "acme/join/end", b"fake-end").await.unwrap();
}

//! `Secrets.Watch` (docs/architecture.md: Delivery) on a real cluster: a watcher on a follower
//! sees every change once, in log order; a dropped stream resumes after its last
//! `through_index` without a gap, on the same node or, when that node dies, on another; names
//! the caller may not read never reach it; a revoked token ends the stream; history a node no
//! longer holds is `resync_needed`, never a gap.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use coffer::client::Client;
use coffer::error::code_of;
use coffer::pb;
use common::*;
use tonic::Streaming;

const APP_READER: &str = r#"{"name":"app-reader","statements":[
    {"effect":"allow","principals":["service:acme:watcher"],"actions":["secrets:read"],"resources":["acme/app/*"]},
    {"effect":"deny","principals":["service:acme:watcher"],"actions":["secrets:read"],"resources":["acme/app/private/*"]}]}"#;

async fn watch(c: &Client, prefix: &str, after_index: u64) -> Result<Streaming<pb::WatchResponse>, tonic::Status> {
    c.secrets
        .clone()
        .watch(pb::WatchRequest {
            prefix: prefix.into(),
            after_index,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

/// What a watcher collected: (index, name, version) of each PUT, and the last through index.
#[derive(Default)]
struct Seen {
    puts: Vec<(u64, String, u64)>,
    through: u64,
}

impl Seen {
    /// Reads `stream` until `want` puts were seen in all, it ends, or it fails (returned).
    async fn read(&mut self, stream: &mut Streaming<pb::WatchResponse>, want: usize) -> Option<tonic::Status> {
        while self.puts.len() < want {
            let next = tokio::time::timeout(Duration::from_secs(20), stream.message())
                .await
                .expect("a watch hears something every second");
            let r = match next {
                Ok(Some(r)) => r,
                Ok(None) => return None,
                Err(e) => return Some(e),
            };
            assert!(r.through_index >= self.through, "through_index went back");
            for e in &r.events {
                assert!(
                    e.index > self.through,
                    "event {} at or before through {}",
                    e.index,
                    self.through
                );
                assert!(e.index <= r.through_index, "an event past its response's through_index");
                if e.kind == pb::SecretEventKind::Put as i32 {
                    self.puts.push((e.index, e.name.clone(), e.version));
                }
            }
            self.through = r.through_index;
        }
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_sees_every_change_once_in_order_across_a_disconnect_and_a_dead_node() {
    let mut cluster = TestCluster::start(BIN, &["us-east", "eu-west", "ap-south"], FAST_RAFT).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let root = cluster.client(leader).await;
    wait_token_key(&root).await;
    put_policy(&root, APP_READER).await;
    let t = create_token(
        &root,
        "service:acme:watcher",
        &[],
        &["app-reader"],
        Duration::from_secs(3600),
    )
    .await;
    let watcher = cluster.client_with(follower, Some(&t.token)).await;

    // Refused up front: a folder the caller may not read, and neither a name nor a prefix.
    // (The follower knows the new token once it applied it.)
    let denied = eventually(Duration::from_secs(10), "the follower to know the token", || async {
        let e = watch(&watcher, "acme/", 0).await.unwrap_err();
        (code_of(&e) != Some("unauthenticated")).then_some(e)
    })
    .await;
    assert_eq!(code_of(&denied), Some("permission_denied"), "{denied:?}");
    let empty = watch(&watcher, "", 0).await.unwrap_err();
    assert_eq!(code_of(&empty), Some("invalid_argument"), "{empty:?}");

    let mut first = watch(&watcher, "acme/app/", 0).await.unwrap();
    let start = first
        .message()
        .await
        .unwrap()
        .expect("the stream starts with where it starts");
    assert!(start.events.is_empty() && start.through_index > 0);
    assert_eq!(start.served_by.unwrap().node_id, cluster.node(follower).id);

    // 200 readable writes over five names, a private write after every tenth.
    let writer = {
        let root = root.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..200u64 {
                let name = format!("acme/app/s{}", i % 5);
                let w = put(&root, &name, format!("fake-value-{i}").as_bytes()).await.unwrap();
                acked.push((w.log_index, name, w.version));
                if i % 10 == 9 {
                    put(&root, "acme/app/private/key", b"fake-private").await.unwrap();
                }
            }
            acked
        })
    };
    let mut seen = Seen {
        through: start.through_index,
        ..Default::default()
    };
    assert!(seen.read(&mut first, 100).await.is_none());
    drop(first); // disconnect mid-way; the writer goes on
    let mut second = watch(&watcher, "acme/app/", seen.through).await.unwrap();
    assert!(seen.read(&mut second, 200).await.is_none());
    let acked = writer.await.unwrap();
    assert_eq!(seen.puts, acked, "every readable put once, in log order, none private");

    // The watched node dies under the stream: the client resumes on another node.
    cluster.kill(follower);
    let ended = tokio::time::timeout(Duration::from_secs(10), second.message())
        .await
        .expect("a stream of a dead node ends");
    assert!(!matches!(ended, Ok(Some(ref r)) if !r.events.is_empty()), "{ended:?}");
    let mut during = Vec::new();
    for i in 0..5u64 {
        let w = put(&root, "acme/app/s0", format!("fake-late-{i}").as_bytes())
            .await
            .unwrap();
        during.push((w.log_index, "acme/app/s0".to_string(), w.version));
    }
    let elsewhere = cluster.client_with(other, Some(&t.token)).await;
    let mut third = watch(&elsewhere, "acme/app/", seen.through).await.unwrap();
    let mut rest = Seen {
        through: seen.through,
        ..Default::default()
    };
    assert!(rest.read(&mut third, 5).await.is_none());
    assert_eq!(rest.puts, during, "the changes made while no node was watched, once");

    // The restarted node no longer holds the history before its restart.
    cluster.restart(follower);
    let back = cluster.client_with(follower, Some(&t.token)).await;
    let gone = eventually(Duration::from_secs(20), "the restarted node to answer", || async {
        match watch(&back, "acme/app/", 1).await {
            Ok(mut s) => match s.message().await {
                Err(e) => Some(e),
                Ok(_) => panic!("a restarted node streamed history it does not hold"),
            },
            Err(e) if code_of(&e) == Some("resync_needed") => Some(e),
            Err(_) => None,
        }
    })
    .await;
    assert_eq!(code_of(&gone), Some("resync_needed"), "{gone:?}");
    assert!(gone.message().contains("read the current state"), "{gone}");

    // Revoking the token ends its stream.
    root.access
        .clone()
        .revoke_token(pb::RevokeTokenRequest {
            accessor: t.accessor.clone(),
        })
        .await
        .unwrap();
    let mut last = Seen {
        through: rest.through,
        ..Default::default()
    };
    let ended = last
        .read(&mut third, usize::MAX)
        .await
        .expect("the stream ends with an error");
    assert_eq!(code_of(&ended), Some("unauthenticated"), "{ended:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_each_change_as_a_json_line_with_its_kind_and_never_a_value() {
    let cluster = TestCluster::start(BIN, &["us-east", "eu-west", "ap-south"], FAST_RAFT).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let root = cluster.client(leader).await;
    wait_token_key(&root).await;
    let v1 = put(&root, "acme/cli/db", b"fake-cli-one").await.unwrap();
    put(&root, "acme/cli/db", b"fake-cli-two").await.unwrap();
    root.secrets
        .clone()
        .set_version_state(pb::SetVersionStateRequest {
            name: "acme/cli/db".into(),
            version: 1,
            enabled: false,
        })
        .await
        .unwrap();
    let after = (v1.log_index - 1).to_string();
    let (code, out, err) = cluster.cli(
        leader,
        &[
            "--output",
            "json",
            "secret",
            "watch",
            "acme/cli/db",
            "--after-index",
            &after,
            "--count",
            "3",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kinds: Vec<(&str, u64)> = lines
        .iter()
        .map(|l| (l["kind"].as_str().unwrap(), l["version"].as_u64().unwrap()))
        .collect();
    assert_eq!(kinds, [("put", 1), ("put", 2), ("version_disabled", 1)]);
    assert_eq!(lines[2]["revoked"], serde_json::json!([1]));
    assert_eq!(lines[1]["aliases"]["CURRENT"], 2);
    assert!(!out.contains("fake-cli"), "a value in the watch output: {out}");
    let by_name: BTreeMap<&str, usize> = lines.iter().fold(BTreeMap::new(), |mut m, l| {
        *m.entry(l["name"].as_str().unwrap()).or_default() += 1;
        m
    });
    assert_eq!(by_name.len(), 1);
}

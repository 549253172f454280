//! Hostile callers against the audit log of a real node: a request's text is escaped and cut
//! before it is recorded, every service refuses a message over the one size limit before
//! anything is recorded, and a source without credentials is limited to a bounded rate of
//! audit records while authenticated callers from the same address are not.

mod common;

use std::path::Path;
use std::time::Duration;
use std::time::Instant;

use coffer::audit::bounds::MAX_EVENT_BYTES;
use coffer::pb;
use common::*;
use prost::Message;
use tonic::Code;

/// The newest record of the audit log at `path` (its `seq` is the number of records).
fn newest(path: &Path) -> coffer::audit::chain::TailEntry {
    coffer::audit::rotation::tail_log(path, 1)
        .expect("read the audit log")
        .pop()
        .expect("a record")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_is_recorded_bounded_and_escaped() {
    let cluster = TestCluster::start(BIN, &["us-east"], FAST_RAFT).await;
    let root = cluster.client(0).await;
    wait_token_key(&root).await;
    let log = cluster.data_dir(0).join("audit.log");
    let anonymous = cluster.client_with(0, None).await;

    // A 900 KiB name full of terminal controls, under the message limit: refused, and recorded
    // in a few KiB, escaped.
    let name = format!("acme/\u{1b}[2J\r\u{202e}{}", "x".repeat(900 * 1024));
    let e = get(&anonymous, &name, None).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let record = newest(&log).event;
    assert!(
        record.encoded_len() <= MAX_EVENT_BYTES,
        "{} bytes",
        record.encoded_len()
    );
    assert!(
        record.resource.starts_with("acme/\\u{1b}[2J\\u{d}\\u{202e}xxx"),
        "{}",
        &record.resource[..40]
    );
    assert!(record.resource.ends_with(" bytes]"), "says how much was cut");

    // An authenticated break-glass read with a huge reason and ticket: recorded bounded too.
    let e = root
        .secrets
        .clone()
        .get_secret_value(pb::GetSecretValueRequest {
            name: "acme/app/none".into(),
            selector: None,
            consistency: None,
            break_glass: Some(pb::BreakGlass {
                reason: format!("because\u{7}{}", "r".repeat(800 * 1024)),
                ticket: "\u{1b}]0;owned\u{7}".repeat(10_000),
            }),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(e.code(), Code::InvalidArgument | Code::PermissionDenied),
        "{e:?}"
    );
    let record = newest(&log).event;
    assert!(
        record.encoded_len() <= MAX_EVENT_BYTES,
        "{} bytes",
        record.encoded_len()
    );
    assert!(
        record.reason.starts_with("because\\u{7}rrr"),
        "{}",
        &record.reason[..30]
    );
    assert!(!record.ticket.contains('\u{1b}') && record.ticket.len() <= 256);

    // Every service refuses a message over the one limit before it is decoded or recorded.
    let before = newest(&log).seq;
    let huge = || "y".repeat(2 << 20);
    let refusals = [
        (
            "Access",
            root.access
                .clone()
                .delete_policy(pb::DeletePolicyRequest { name: huge() })
                .await
                .map(|_| ()),
        ),
        (
            "Kms",
            root.kms
                .clone()
                .rewrap(pb::RewrapRequest { region: huge() })
                .await
                .map(|_| ()),
        ),
        (
            "Cluster",
            root.cluster
                .clone()
                .change_membership(pb::MembershipChangeRequest {
                    change: Some(pb::membership_change_request::Change::AddLearner(pb::NodeInfo {
                        name: huge(),
                        ..Default::default()
                    })),
                    force: false,
                })
                .await
                .map(|_| ()),
        ),
        (
            "Secrets",
            get(&root, &format!("acme/{}", huge()), None).await.map(|_| ()),
        ),
    ];
    for (service, r) in refusals {
        let e = r.unwrap_err();
        assert_eq!(e.code(), Code::OutOfRange, "{service}: {e:?}");
    }
    assert_eq!(
        newest(&log).seq,
        before,
        "a refused oversized message left an audit record"
    );

    // `coffer audit tail` shows the recorded text escaped: no control reaches the terminal.
    let (code, out, err) = cluster.cli(0, &["audit", "tail", "--count", "10"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("acme/\\u{1b}[2J"), "{out}");
    assert!(
        !out.chars().any(|c| c.is_control() && c != '\n' || c == '\u{202e}'),
        "{out:?}"
    );
    assert!(!cluster.log(0).contains("panicked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_requests_are_limited_per_source() {
    let cluster = TestCluster::start(BIN, &["us-east"], FAST_RAFT).await;
    let root = cluster.client(0).await;
    wait_token_key(&root).await;
    let log = cluster.data_dir(0).join("audit.log");
    let before = newest(&log).seq;

    // 800 requests without a valid token, 16 at a time, from one address.
    let start = Instant::now();
    let mut tasks = vec![];
    for t in 0..16 {
        let c = cluster
            .client_with(0, if t % 2 == 0 { None } else { Some("garbage") })
            .await;
        tasks.push(tokio::spawn(async move {
            let mut codes = vec![];
            for _ in 0..50 {
                let e = get(&c, "acme/app/key", None).await.unwrap_err();
                codes.push((
                    e.code(),
                    coffer::error::code_of(&e).map(str::to_string),
                    e.message().to_string(),
                ));
            }
            codes
        }));
    }
    let mut admitted = 0u64;
    let mut limited = 0u64;
    for t in tasks {
        for (code, coffer_code, message) in t.await.unwrap() {
            match code {
                Code::Unauthenticated => admitted += 1,
                Code::ResourceExhausted => {
                    assert_eq!(coffer_code.as_deref(), Some("rate_limited"));
                    assert!(message.contains("retry in"), "{message}");
                    limited += 1;
                }
                other => panic!("unexpected {other:?}: {message}"),
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    assert_eq!(admitted + limited, 800);
    // The default limit: a burst of 100, then 20 a second.
    let bound = 100 + (20.0 * elapsed).ceil() as u64 + 1;
    assert!(
        admitted <= bound,
        "{admitted} admitted in {elapsed:.1} s (bound {bound})"
    );
    assert!(
        limited > 0,
        "nothing was limited ({admitted} admitted in {elapsed:.1} s)"
    );

    // An authenticated caller from the same address is not limited.
    put(&root, "acme/app/key", b"fake-after-the-flood").await.unwrap();
    // The audit log holds every admitted request, and at most one refusal per admission.
    let grown = newest(&log).seq - before;
    assert!(
        grown > admitted,
        "{grown} records for {admitted} admitted requests and one put"
    );
    assert!(
        grown <= 2 * admitted + 2,
        "{grown} records for {admitted} admitted requests"
    );

    // The limit refills: a later unauthenticated request is judged on its credentials again.
    let anonymous = cluster.client_with(0, None).await;
    let e = eventually(Duration::from_secs(10), "the source's bucket to refill", || {
        let c = anonymous.clone();
        async move {
            let e = get(&c, "acme/app/key", None).await.unwrap_err();
            (e.code() == Code::Unauthenticated).then_some(e)
        }
    })
    .await;
    assert!(e.message().contains("missing token"), "{}", e.message());
}

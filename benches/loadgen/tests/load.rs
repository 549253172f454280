//! The load generator against the in-process echo service over real loopback sockets: the
//! closed loop counts what it measures, and the open loop charges a server stall to every
//! request that arrived during it (coordinated omission), where a closed loop hides it.

use std::sync::Arc;
use std::time::Duration;

use coffer_bench::echo;
use coffer_bench::load;
use coffer_bench::load::Window;
use coffer_bench::target::Conn;
use coffer_bench::target::Keyspace;
use coffer_bench::target::Workload;
use tokio::sync::RwLock;

async fn echo_server() -> (String, Arc<RwLock<()>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stall = Arc::new(RwLock::new(()));
    tokio::spawn(echo::serve_on(listener, stall.clone()));
    (addr, stall)
}

async fn conns(addr: &str, n: usize) -> Vec<Conn> {
    let mut v = vec![];
    for _ in 0..n {
        v.push(Conn::echo(addr).await.unwrap());
    }
    v
}

const WINDOW: Window = Window {
    warmup: Duration::from_millis(100),
    measure: Duration::from_millis(1000),
};

/// Stalls the server for `pause` once, `after` into the run.
fn stall_later(stall: Arc<RwLock<()>>, after: Duration, pause: Duration) {
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        let _held = stall.write().await;
        tokio::time::sleep(pause).await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_counts_completed_requests_and_checks_sizes() {
    let (addr, _) = echo_server().await;
    let c = conns(&addr, 2).await;
    let ks = Keyspace::new(4096, 100);
    let o = load::closed_loop(&c, 4, Workload::LocalRead, &ks, WINDOW).await;
    assert_eq!(o.errors, 0, "{:?}", o.first_error);
    assert!(o.ops > 100, "{o:?}");
    assert!(o.latency_us.p50 >= 1 && o.latency_us.p50 <= o.latency_us.p99, "{o:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_holds_the_rate_and_charges_stalls_to_every_delayed_request() {
    let (addr, stall) = echo_server().await;
    let c = conns(&addr, 4).await;
    let ks = Keyspace::new(256, 100);

    // Unstalled: the asked rate is what is served.
    let o = load::open_loop(&c, 500.0, 10_000, Workload::LocalRead, &ks, WINDOW).await;
    assert_eq!(o.errors, 0, "{:?}", o.first_error);
    assert!((450..=550).contains(&o.ops), "500/s for 1 s: {o:?}");
    assert_eq!(o.shed, Some(0));

    // A 200 ms stall in the middle of the window: about 100 of the 500 requests arrive during
    // it and each is charged the time it waited from its intended start, so the p90 is tens of
    // milliseconds.
    stall_later(stall.clone(), Duration::from_millis(500), Duration::from_millis(200));
    let open = load::open_loop(&c, 500.0, 10_000, Workload::LocalRead, &ks, WINDOW).await;
    assert!(open.latency_us.p90 >= 20_000, "open loop hid the stall: {open:?}");
    assert!(open.latency_us.max >= 150_000, "{open:?}");

    // The same stall under a closed loop of one request at a time delays just one request, so
    // its p90 stays at the unstalled round trip: the omission the open loop avoids.
    stall_later(stall, Duration::from_millis(500), Duration::from_millis(200));
    let closed = load::closed_loop(&c[..1], 1, Workload::LocalRead, &ks, WINDOW).await;
    assert!(closed.latency_us.max >= 150_000, "the stall happened: {closed:?}");
    assert!(closed.latency_us.p90 < 20_000, "{closed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_request_is_an_error_never_a_served_read() {
    let (addr, _) = echo_server().await;
    let c = conns(&addr, 1).await;
    // Larger than the echo's maximum: every request fails, none is counted as served.
    let ks = Keyspace::new(2 << 20, 10);
    let o = load::closed_loop(&c, 1, Workload::LocalRead, &ks, WINDOW).await;
    assert_eq!(o.ops, 0, "{o:?}");
    assert!(
        o.errors > 0 && o.first_error.as_deref().unwrap().contains("exceeds"),
        "{o:?}"
    );
}
